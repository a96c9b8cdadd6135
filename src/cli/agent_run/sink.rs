//! The token sink: a file the workload reads, replaced atomically.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::random::random_base62;

/// Replaces the token sink with `token`, alone and without a newline.
/// The token goes to a new file in the same directory (mode 0600, made
/// here so nobody can have opened it first), reaches the disk, and is
/// renamed over the sink: the workload reads the old token or the new
/// one, never half of one. A symbolic link at the sink is replaced, not
/// followed.
pub(super) fn write_sink(sink: &Path, token: &str) -> anyhow::Result<()> {
    let (temporary, mut file) = create_temporary(sink)?;
    file.write_all(token.as_bytes())
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&temporary, sink))
        .with_context(|| format!("cannot write the token sink {}", sink.display()))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&temporary);
        })
}

/// Fails now, before the one-time bootstrap token is spent, if the sink's
/// directory would not take the token.
pub(super) fn check_sink_writable(sink: &Path) -> anyhow::Result<()> {
    let (temporary, _) = create_temporary(sink)?;
    std::fs::remove_file(&temporary)
        .with_context(|| format!("cannot remove {}", temporary.display()))
}

/// A new, empty, owner-only file beside `sink`, with a random name.
pub(super) fn create_temporary(sink: &Path) -> anyhow::Result<(PathBuf, File)> {
    let name = sink
        .file_name()
        .with_context(|| format!("the token sink {} names no file", sink.display()))?;
    let dir = sink.parent().filter(|dir| !dir.as_os_str().is_empty());
    let temporary = dir.unwrap_or(Path::new(".")).join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        random_base62(12)
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(&temporary).with_context(|| {
        format!(
            "cannot create a file beside the token sink {}",
            sink.display()
        )
    })?;
    Ok((temporary, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sink_is_owner_only_and_replaced_whole() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let sink = dir.path().join("token");
        write_sink(&sink, "first").unwrap();
        let mut reader = File::open(&sink).unwrap();
        write_sink(&sink, "second").unwrap();
        assert_eq!(std::fs::read_to_string(&sink).unwrap(), "second");
        // A reader who opened the old file still reads the old token whole:
        // the new one came by rename, not by rewriting in place.
        let mut old = String::new();
        std::io::Read::read_to_string(&mut reader, &mut old).unwrap();
        assert_eq!(old, "first");
        let mode = std::fs::metadata(&sink).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["token"], "no temporary file is left");
    }

    #[test]
    fn a_link_at_the_sink_is_replaced_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "untouched").unwrap();
        let sink = dir.path().join("token");
        std::os::unix::fs::symlink(&target, &sink).unwrap();
        write_sink(&sink, "token").unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "untouched");
        assert!(std::fs::symlink_metadata(&sink).unwrap().is_file());
    }

    #[test]
    fn an_unwritable_sink_is_found_before_registering() {
        let dir = tempfile::tempdir().unwrap();
        assert!(check_sink_writable(&dir.path().join("token")).is_ok());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(check_sink_writable(&dir.path().join("missing/token")).is_err());
        assert!(check_sink_writable(Path::new("/")).is_err());
    }
}
