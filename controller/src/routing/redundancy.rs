//! Single points of failure (in progress).
