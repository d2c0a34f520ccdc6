//! Files a pull request controls: the desired-state folder's own files, and the files its YAML
//! names (`{ file: PATH }` secrets, CA files, known-hosts files).
//!
//! git stores symbolic links, and a checkout may hold a FIFO, a socket or a device node. So a
//! file is read only when it is a regular file once every link is resolved (a FIFO would block
//! the reader, `/dev/zero` never ends), only when it stays inside the folder it must stay in
//! (a link to `/etc/wispctl.env` would put the secrets of that file in an error message), and
//! only up to a size given by the caller, checked before reading and enforced while reading.
//! Nothing is opened before it passes; what is opened is opened with `O_NOFOLLOW` and
//! `O_NONBLOCK` and checked again, so that a swap between the check and the open is caught
//! too.
//!
//! No error here holds a byte of the file.

use std::fs::{self, File, FileType, Metadata, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The largest file a YAML file may name for another part to read (a CA file, a known-hosts
/// file): 16 MiB, the size of the largest desired-state file.
pub const MAX_NAMED_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// Why a file was not read. Never holds any of its content.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file system refused (not found, permission denied, ...). The message is the error's
    /// own: it is not also exposed as a source, so a printed chain shows it once.
    #[error("{0}")]
    Io(std::io::Error),
    /// A FIFO, socket, device or folder (links followed).
    #[error("this is {what}, not a regular file: refused without opening it")]
    NotRegular {
        /// What it is (`a FIFO (named pipe)`).
        what: &'static str,
    },
    /// The path, once its links are resolved, is outside the folder it must stay in.
    #[error(
        "a symbolic link that leads outside the desired-state folder: refused without reading it"
    )]
    LeavesFolder,
    /// Larger than the caller takes.
    #[error("the file is {len} bytes; files over {} are refused", size(*max))]
    TooLarge {
        /// Its size.
        len: u64,
        /// The most the caller takes.
        max: u64,
    },
    /// Grew past the cap while it was read.
    #[error("the file grew past {} while it was read: refused", size(*max))]
    Grew {
        /// The most the caller takes.
        max: u64,
    },
}

impl FileError {
    /// Whether the file does not exist (or a link leads nowhere).
    pub fn is_not_found(&self) -> bool {
        matches!(self, FileError::Io(e) if e.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Reads a regular file of at most `max` bytes. With `within` (a folder), the file, once every
/// symbolic link on its path is resolved, must lie inside that folder (itself resolved).
pub fn read(path: &Path, max: u64, within: Option<&Path>) -> Result<Vec<u8>, FileError> {
    // Resolving links reads no file and opens nothing.
    let real = fs::canonicalize(path).map_err(FileError::Io)?;
    if let Some(folder) = within {
        let folder = fs::canonicalize(folder).map_err(FileError::Io)?;
        if !real.starts_with(&folder) {
            return Err(FileError::LeavesFolder);
        }
    }
    admit(&fs::metadata(&real).map_err(FileError::Io)?, max)?;
    // `real` has no link left in it: O_NOFOLLOW refuses one put there since. O_NONBLOCK keeps
    // a FIFO put there since from blocking the open; it is then refused below.
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&real)
        .map_err(FileError::Io)?;
    let len = admit(&file.metadata().map_err(FileError::Io)?, max)?;
    read_capped(file, len, max)
}

/// Checks, without opening it, that `path` (links followed) is a regular file of at most
/// `max` bytes: for a file that another part reads later (a CA file, a known-hosts file).
pub fn check(path: &Path, max: u64) -> Result<(), FileError> {
    admit(&fs::metadata(path).map_err(FileError::Io)?, max).map(|_| ())
}

/// A regular file of at most `max` bytes: its length.
fn admit(meta: &Metadata, max: u64) -> Result<u64, FileError> {
    if !meta.is_file() {
        return Err(FileError::NotRegular {
            what: describe(meta.file_type()),
        });
    }
    if meta.len() > max {
        return Err(FileError::TooLarge {
            len: meta.len(),
            max,
        });
    }
    Ok(meta.len())
}

/// At most `max` bytes of an open file; one more is an error (a file that grows, or one whose
/// size the file system does not know, such as those under `/proc`).
fn read_capped(file: File, len: u64, max: u64) -> Result<Vec<u8>, FileError> {
    let mut bytes = Vec::with_capacity(usize::try_from(len.saturating_add(1)).unwrap_or(0));
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(FileError::Io)?;
    if bytes.len() as u64 > max {
        return Err(FileError::Grew { max });
    }
    Ok(bytes)
}

/// What a file that is not regular is, for a message.
fn describe(t: FileType) -> &'static str {
    if t.is_dir() {
        "a folder"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "a special file"
    }
}

/// A size for a message: whole MiB or KiB when it is one, else bytes.
fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// Why bytes are not text a YAML file may hold, with the 1-based line and column (in
/// characters) of the first offending byte. Never holds the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// A byte that does not belong to UTF-8 (a Latin-1 `é`, binary data).
    #[error(
        "the file is not valid UTF-8 here (a Latin-1 or binary byte): save it as UTF-8; its content is not shown"
    )]
    NotUtf8 {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// A control character other than a tab or a line break: binary data, not YAML.
    #[error(
        "the file holds a control character (U+{code:04X}): binary data, not YAML; its content is not shown"
    )]
    Control {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The character's code point.
        code: u32,
    },
}

impl TextError {
    /// Line and column of the offending byte.
    pub fn place(&self) -> (usize, usize) {
        match *self {
            TextError::NotUtf8 { line, column } | TextError::Control { line, column, .. } => {
                (line, column)
            }
        }
    }
}

/// The bytes as text a YAML file may hold: UTF-8, with no control character but tab, line
/// feed, carriage return and next line (YAML's printable set).
pub fn text(bytes: Vec<u8>) -> Result<String, TextError> {
    let text = String::from_utf8(bytes).map_err(|e| {
        let good = e.utf8_error().valid_up_to();
        let prefix = std::str::from_utf8(&e.as_bytes()[..good]).unwrap_or_default();
        let (line, column) = place_after(prefix);
        TextError::NotUtf8 { line, column }
    })?;
    if let Some((at, c)) = text
        .char_indices()
        .find(|(_, c)| c.is_control() && !matches!(c, '\t' | '\n' | '\r' | '\u{85}'))
    {
        let (line, column) = place_after(&text[..at]);
        return Err(TextError::Control {
            line,
            column,
            code: u32::from(c),
        });
    }
    Ok(text)
}

/// Line and column of the character that follows `prefix`.
fn place_after(prefix: &str) -> (usize, usize) {
    let line = prefix.bytes().filter(|b| *b == b'\n').count() + 1;
    let start = prefix.rfind('\n').map_or(0, |i| i + 1);
    (line, prefix[start..].chars().count() + 1)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;
    use std::process::Command;

    use super::*;

    #[test]
    fn a_regular_file_is_read_up_to_its_cap() {
        let tmp = tempfile::tempdir().unwrap();
        let f = tmp.path().join("f");
        fs::write(&f, "12345").unwrap();
        assert_eq!(read(&f, 5, Some(tmp.path())).unwrap(), b"12345");
        let e = read(&f, 4, None).unwrap_err();
        assert!(matches!(e, FileError::TooLarge { len: 5, max: 4 }), "{e}");
        assert_eq!(
            e.to_string(),
            "the file is 5 bytes; files over 4 bytes are refused"
        );
        assert!(
            read(&tmp.path().join("none"), 5, None)
                .unwrap_err()
                .is_not_found()
        );
    }

    #[test]
    fn special_files_are_refused_without_being_opened() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("fifo");
        let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        // Opening a FIFO for reading blocks until a writer comes: an error here proves it
        // was not opened.
        let e = read(&fifo, 100, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "this is a FIFO (named pipe), not a regular file: refused without opening it"
        );
        assert!(check(&fifo, 100).is_err());
        let e = read(Path::new("/dev/zero"), 100, None).unwrap_err();
        assert!(
            matches!(
                e,
                FileError::NotRegular {
                    what: "a character device"
                }
            ),
            "{e}"
        );
        let e = read(tmp.path(), 100, None).unwrap_err();
        assert!(
            matches!(e, FileError::NotRegular { what: "a folder" }),
            "{e}"
        );
        // A link to one is the same.
        symlink("/dev/zero", tmp.path().join("zero")).unwrap();
        assert!(matches!(
            read(&tmp.path().join("zero"), 100, None).unwrap_err(),
            FileError::NotRegular { .. }
        ));
    }

    #[test]
    fn links_out_of_the_folder_are_refused_and_links_inside_are_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let folder = tmp.path().join("desired");
        fs::create_dir_all(folder.join("pppoe")).unwrap();
        fs::write(tmp.path().join("outside.env"), "PW=secret\n").unwrap();
        fs::write(folder.join("inside.yaml"), "a: 1\n").unwrap();
        symlink("../../outside.env", folder.join("pppoe/out.yaml")).unwrap();
        symlink("../inside.yaml", folder.join("pppoe/in.yaml")).unwrap();
        symlink(tmp.path(), folder.join("up")).unwrap();
        let e = read(&folder.join("pppoe/out.yaml"), 100, Some(&folder)).unwrap_err();
        assert!(matches!(e, FileError::LeavesFolder), "{e}");
        assert!(!e.to_string().contains("secret"));
        let e = read(&folder.join("up/outside.env"), 100, Some(&folder)).unwrap_err();
        assert!(matches!(e, FileError::LeavesFolder), "{e}");
        assert_eq!(
            read(&folder.join("pppoe/in.yaml"), 100, Some(&folder)).unwrap(),
            b"a: 1\n"
        );
        // Without a folder to stay in (a secret file), a link is followed.
        assert_eq!(
            read(&folder.join("pppoe/out.yaml"), 100, None).unwrap(),
            b"PW=secret\n"
        );
    }

    #[test]
    fn a_file_without_a_known_size_is_still_capped() {
        // Files under /proc report a size of 0 and hold more.
        let e = read(Path::new("/proc/self/status"), 10, None).unwrap_err();
        assert!(matches!(e, FileError::Grew { max: 10 }), "{e}");
    }

    #[test]
    fn text_errors_name_the_first_bad_byte() {
        assert_eq!(text(b"a: 1\n".to_vec()).unwrap(), "a: 1\n");
        let e = text(b"a: 1\nname: caf\xe9\n".to_vec()).unwrap_err();
        assert_eq!(
            e,
            TextError::NotUtf8 {
                line: 2,
                column: 10
            }
        );
        // Columns count characters, not bytes.
        let mut bytes = "a: ñ".as_bytes().to_vec();
        bytes.push(0xff);
        let e = text(bytes).unwrap_err();
        assert_eq!(e.place(), (1, 5));
        let e = text(b"a: 1\n\n  b: \x00x\n".to_vec()).unwrap_err();
        assert_eq!(
            e,
            TextError::Control {
                line: 3,
                column: 6,
                code: 0
            }
        );
        assert!(text(b"a:\tb\r\n".to_vec()).is_ok());
    }
}
