//! `cairn passwd`: adds, changes or deletes one user of a password file in Mosquitto's format,
//! as `mosquitto_passwd` 2.0 does (`-c` creates or overwrites the file, without it a missing
//! file is an error; `-D` deletes; `-b` takes the password from the command line, else it is
//! asked for twice without echo). The other lines stay as they were, in their order; the file
//! is replaced atomically (a temporary file in the same directory, fsync, rename) with the mode,
//! owner and group it had; a new file gets mode 0640 and, where the system has it, the service's
//! group `cairn`, so that the service can read it.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use cairn::auth::{check_user_name, PasswordFile};

use super::{Explained, Outcome};

/// Why a password could not be asked for.
const NO_TERMINAL: &str =
    "cannot read the password from the terminal (-b gives it on the command line)";

/// The mode of a new password file: the service reads it as its group.
const NEW_FILE_MODE: u32 = 0o640;

/// The group the service runs as (the package creates it, `cairn.service` names it).
const SERVICE_GROUP: &str = "cairn";

/// Where the system's groups are.
const GROUP_FILE: &str = "/etc/group";

/// What `cairn passwd` was asked to do.
#[derive(Debug)]
pub struct Request<'a> {
    pub file: &'a Path,
    pub user: &'a str,
    pub action: Action<'a>,
    /// Start from an empty file, replacing any existing one.
    pub create: bool,
}

#[derive(Debug)]
pub enum Action<'a> {
    /// Set the password given on the command line.
    SetGiven(&'a str),
    /// Ask for the password on the terminal, twice.
    SetPrompted,
    Delete,
}

/// Runs the request; prints what went wrong on stderr.
pub fn passwd(request: &Request<'_>) -> Outcome {
    match edit(request) {
        Ok(()) => Outcome::Success,
        Err(error) => {
            let _ = writeln!(io::stderr(), "cairn passwd: {}", Explained(&error));
            Outcome::RuntimeError
        }
    }
}

fn edit(request: &Request<'_>) -> anyhow::Result<()> {
    let path = resolve(request.file)?;
    let existing = fs::metadata(&path).ok();
    let mut file = if request.create {
        PasswordFile::default()
    } else if existing.is_none() {
        bail!("{} does not exist (-c creates it)", request.file.display());
    } else {
        PasswordFile::load(&path)?
    };
    match &request.action {
        Action::Delete => {
            if !file.remove(request.user) {
                bail!(
                    "user {:?} is not in {}",
                    request.user,
                    request.file.display()
                );
            }
        }
        Action::SetGiven(password) => file.set_password(request.user, password.as_bytes())?,
        Action::SetPrompted => {
            // A bad user name is refused before the password is asked for.
            check_user_name(request.user)?;
            let password = prompt_twice()?;
            file.set_password(request.user, password.as_bytes())?;
        }
    }
    write_atomically(&path, &file.to_text(), existing.as_ref())
}

/// The file `path` names, through any symbolic links (so a link stays a link); `path` itself
/// when it does not exist yet.
fn resolve(path: &Path) -> anyhow::Result<PathBuf> {
    match fs::canonicalize(path) {
        Ok(real) => Ok(real),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(path.to_path_buf()),
        Err(error) => Err(error).with_context(|| format!("cannot open {}", path.display())),
    }
}

/// Gives the new file `file` (to become `path`) the service's group, if the system has that group and
/// it is not the file's already. Where the caller may not (neither root nor in the group), the
/// file keeps the caller's group, and a note on stderr says how the service gets to read it.
fn give_service_group(file: &File, path: &Path) {
    let Some(gid) = fs::read_to_string(GROUP_FILE)
        .ok()
        .and_then(|groups| group_id(&groups, SERVICE_GROUP))
    else {
        return;
    };
    if file.metadata().is_ok_and(|meta| meta.gid() == gid) {
        return;
    }
    if let Err(error) = std::os::unix::fs::fchown(file, None, Some(gid)) {
        let _ = writeln!(
            io::stderr(),
            "cairn passwd: note: {} keeps your group ({error}); the service reads it once \
             `chgrp {SERVICE_GROUP} {}` gives it the group {SERVICE_GROUP}",
            path.display(),
            path.display()
        );
    }
}

/// The id of group `name` in `groups`, the text of an `/etc/group` file (`name:password:gid:members`).
fn group_id(groups: &str, name: &str) -> Option<u32> {
    groups.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next() == Some(name))
            .then(|| fields.nth(1)?.trim().parse().ok())
            .flatten()
    })
}

/// The password typed twice on the terminal, without echo.
fn prompt_twice() -> anyhow::Result<String> {
    let first = rpassword::prompt_password("Password: ").context(NO_TERMINAL)?;
    let second = rpassword::prompt_password("Reenter password: ").context(NO_TERMINAL)?;
    if first != second {
        bail!("the passwords do not match");
    }
    Ok(first)
}

/// Replaces `path` with `text`: written to a temporary file beside it, synced, renamed over
/// it, and the directory synced. The file keeps the mode, owner and group of `existing`.
fn write_atomically(
    path: &Path,
    text: &str,
    existing: Option<&fs::Metadata>,
) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .context("the password file has no file name")?;
    let temporary = dir.join(format!(
        ".{}.cairn-passwd-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = write_new(&temporary, path, text, existing).and_then(|()| {
        fs::rename(&temporary, path).with_context(|| format!("cannot replace {}", path.display()))
    });
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written?;
    File::open(dir)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("cannot sync the directory {}", dir.display()))
}

/// Creates `path` with `text`, the mode, owner and group of `existing` (or mode 0640 and the
/// service's group, see [`give_service_group`]), synced; `path` will replace `target`.
fn write_new(
    path: &Path,
    target: &Path,
    text: &str,
    existing: Option<&fs::Metadata>,
) -> anyhow::Result<()> {
    let mode = existing.map_or(NEW_FILE_MODE, |meta| meta.mode() & 0o7777);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    // Whatever the umask took away.
    file.set_permissions(Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    if existing.is_none() {
        give_service_group(&file, target);
    }
    if let Some(meta) = existing {
        let ours = file.metadata()?;
        if (ours.uid(), ours.gid()) != (meta.uid(), meta.gid()) {
            std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid())).with_context(
                || {
                    format!(
                        "cannot give {} the owner {} and group {} of the file it replaces",
                        path.display(),
                        meta.uid(),
                        meta.gid()
                    )
                },
            )?;
        }
    }
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_id_is_read_from_its_line_of_the_group_file() {
        let groups = "root:x:0:\n# a comment\ncairnish:x:998:\ncairn:x:997:alice,bob\nbad:x:nan:\n";
        assert_eq!(group_id(groups, "cairn"), Some(997));
        assert_eq!(group_id(groups, "root"), Some(0));
        assert_eq!(group_id(groups, "cair"), None, "a name is matched whole");
        assert_eq!(group_id(groups, "bad"), None, "an id that is not a number");
        assert_eq!(group_id(groups, "absent"), None);
        assert_eq!(group_id("", "cairn"), None);
    }
}
