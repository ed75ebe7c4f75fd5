//! Crash-safe file writes that never follow a symbolic link: write to a
//! temporary file in the same directory, fsync it, rename it over the target,
//! fsync the directory. A crash at any point leaves either the old file or the
//! new one, never a torn or missing one.
//!
//! Every file wssgate writes is opened with `O_NOFOLLOW`, temporary files are
//! created exclusively (`O_EXCL`), and a directory written into must not be a
//! symbolic link: a link planted at a temporary name, in place of the audit log
//! or of an archive directory cannot redirect a write to another file. Reads
//! (the keystore directory's Kubernetes `..data` links) are not concerned.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Distinguishes the temporary files of concurrent writes in one process.
static TEMPORARY: AtomicU64 = AtomicU64::new(0);

/// Replace `path` with `bytes` atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_mode(path, bytes, 0o666)
}

/// [`write_atomic`] for a secret (a private key): the file is readable by its
/// owner only from its creation, so no reader ever sees it with a wider mode.
pub fn write_atomic_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_mode(path, bytes, 0o600)
}

fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    refuse_symlink(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        TEMPORARY.fetch_add(1, Ordering::Relaxed)
    ));
    let mut f = match create_exclusive(&tmp, mode) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            // Left by a crashed process with the same id, or planted: removing
            // a link removes the link, never what it points to.
            fs::remove_file(&tmp)?;
            create_exclusive(&tmp, mode)?
        }
        other => other?,
    };
    let written = f.write_all(bytes).and_then(|()| f.sync_all());
    drop(f);
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

/// A new file at `path`: fails if anything (a link included) is there already.
fn create_exclusive(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Open `path` for appending, creating it if absent; a symbolic link there is
/// refused (`ELOOP`), not followed.
pub fn open_append(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        refuse_symlink(dir)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Open `path` for writing in place (a lock file), creating it if absent,
/// never through a symbolic link.
pub fn open_write(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        refuse_symlink(dir)?;
    }
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Write a secret (an admin token) readable by its owner only (mode 0600, also
/// when the file existed with a wider mode), never through a symbolic link.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    f.set_permissions(fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)
}

/// Make a directory's entries (renames, creations, deletions) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Create a directory and its parents, then make the creation durable. The
/// directory itself must not be a symbolic link.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        fs::create_dir_all(dir)?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
    }
    refuse_symlink(dir)
}

/// [`create_dir_all`] for a directory inside `root` (the state directory):
/// no component between `root` and `dir` may be a symbolic link, and each is
/// checked before anything is created inside it.
pub fn create_dir_all_within(root: &Path, dir: &Path) -> io::Result<()> {
    let Ok(inside) = dir.strip_prefix(root) else {
        return create_dir_all(dir);
    };
    create_dir_all(root)?;
    let mut at = root.to_path_buf();
    for component in inside.components() {
        at.push(component);
        match fs::create_dir(&at) {
            Ok(()) => sync_dir(at.parent().unwrap_or(root))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => refuse_symlink(&at)?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn refuse_symlink(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(io::Error::other(format!(
            "{} is a symbolic link: wssgate does not write through links",
            path.display()
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_link_at_the_temporary_name_is_removed_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, "keep").unwrap();
        let target = dir.path().join("a.pem");
        let tmp = dir.path().join(format!(
            ".a.pem.tmp-{}-{}",
            std::process::id(),
            TEMPORARY.load(Ordering::Relaxed)
        ));
        symlink(&victim, &tmp).unwrap();
        write_atomic(&target, b"new").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert_eq!(fs::read(&target).unwrap(), b"new");
    }

    #[test]
    fn writes_into_a_linked_directory_or_through_a_linked_file_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        let state = dir.path().join("state");
        fs::create_dir(&state).unwrap();
        symlink(&elsewhere, state.join("archive")).unwrap();
        let archive = state.join("archive").join("alias");
        assert!(create_dir_all_within(&state, &archive).is_err());
        let linked = dir.path().join("linked");
        symlink(&elsewhere, &linked).unwrap();
        assert!(create_dir_all(&linked).is_err());
        assert!(write_atomic(&linked.join("x"), b"x").is_err());
        let victim = dir.path().join("victim");
        fs::write(&victim, "keep").unwrap();
        symlink(&victim, state.join("audit.log")).unwrap();
        assert!(open_append(&state.join("audit.log")).is_err());
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert!(fs::read_dir(&elsewhere).unwrap().next().is_none());
    }
}
