//! nftables through the `nft` tool: a generated ruleset goes in on stdin
//! (`nft -f -`), which nft applies as one transaction, so a table is
//! replaced atomically and a bad ruleset changes nothing.
//!
//! Each freimesh table is owned whole by the agent: the ruleset starts by
//! creating the table (a no-op if it exists) and deleting it, then defines
//! it afresh, so applying twice or after a crash leaves exactly one copy.

use std::{io, process::Stdio};

use tokio::{io::AsyncWriteExt as _, process::Command};

/// What can go wrong running `nft`.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// `nft` is not installed (Debian: `nftables`; OpenWrt: `nftables`).
    #[error("running nft: {cause} (is nftables installed? Debian/OpenWrt package: nftables)")]
    Spawn { cause: io::Error },
    /// nft refused the ruleset or the deletion.
    #[error("nft refused {what}: {stderr}")]
    Refused { what: String, stderr: String },
}

/// The ruleset text that replaces `table <family> <name>` with `body`
/// (the table's contents, one chain after another).
pub fn replace_table(family: &str, name: &str, body: &str) -> String {
    format!(
        "table {family} {name} {{}}\ndelete table {family} {name}\ntable {family} {name} {{\n{body}}}\n"
    )
}

/// Applies a ruleset with `nft -f -`.
pub async fn apply(ruleset: &str, what: &str) -> Result<(), NftError> {
    run(&["-f", "-"], Some(ruleset), what).await
}

/// Deletes one of the agent's tables; a missing table counts as done.
pub async fn delete_table(family: &str, name: &str) -> Result<(), NftError> {
    // Creating it first makes the deletion succeed whether or not it was
    // there, in one transaction.
    let ruleset = format!("table {family} {name} {{}}\ndelete table {family} {name}\n");
    apply(&ruleset, &format!("deleting table {family} {name}")).await
}

async fn run(args: &[&str], stdin: Option<&str>, what: &str) -> Result<(), NftError> {
    let mut child = Command::new("nft")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|cause| NftError::Spawn { cause })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .await
            .map_err(|cause| NftError::Spawn { cause })?;
        // Dropping the pipe closes it: nft reads to end of file.
    }
    let output = child
        .wait_with_output()
        .await
        .map_err(|cause| NftError::Spawn { cause })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(NftError::Refused {
            what: what.to_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replacing_a_table_creates_deletes_and_defines_it() {
        assert_eq!(
            replace_table("inet", "t", "\tchain c {\n\t}\n"),
            "table inet t {}\ndelete table inet t\ntable inet t {\n\tchain c {\n\t}\n}\n"
        );
    }
}
