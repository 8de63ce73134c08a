//! meshviewer export (in progress).
