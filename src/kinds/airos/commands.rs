//! The exact commands wispctl runs on an antenna, and the parsers of what they print.
//!
//! Every command is a fixed string: no value from YAML, from UISP or from the device is ever
//! placed in a command line. File content travels through the command's stdin. The one
//! exceptions are numbers this module formats itself: [`kill`]'s process id (parsed from `ps`
//! as a number) and the byte count of [`write_system`] and [`write_running`].
//!
//! The lab fleet (`super::twin::fleet`) interprets exactly these strings and nothing else, and
//! the interop tests run them on a real busybox `ash` behind OpenSSH.

/// Prints the files wispctl reads, each as a header line and then exactly as many bytes as the
/// header says (`wispctl-file PATH LENGTH\n` + content), or `wispctl-none PATH\n` when the file
/// does not exist. Parsed by [`parse_read`].
pub const READ: &str = "for f in /tmp/system.cfg /tmp/running.cfg /etc/board.info /proc/ubnthal/board.info /etc/version; do if [ -f \"$f\" ]; then echo \"wispctl-file $f $(wc -c < \"$f\")\" && cat \"$f\" || exit 1; else echo \"wispctl-none $f\"; fi; done";

/// Replaces `/tmp/system.cfg` with stdin, which must be exactly `len` bytes. See `write_file`.
pub fn write_system(len: usize) -> String {
    write_file(SYSTEM_CFG, len)
}

/// Replaces `/tmp/running.cfg` with stdin, which must be exactly `len` bytes.
pub fn write_running(len: usize) -> String {
    write_file(RUNNING_CFG, len)
}

/// The temporary file a write goes through: `/tmp/.wispctl.<name>`.
fn temp_of(path: &str) -> String {
    let name = path.rsplit('/').next().unwrap_or(path);
    format!("/tmp/.wispctl.{name}")
}

/// `{ cp -p PATH TEMP 2>/dev/null || :; } && cat > TEMP && [ "$(wc -c < TEMP)" -eq LEN ] &&
/// mv -f TEMP PATH || { rm -f TEMP; exit 1; }`: stdin goes to a temporary file in the same
/// folder (a copy of the file first, so that it keeps the file's mode and owner), which replaces
/// the file only when it holds every byte sent. When the connection drops mid-way, `cat` sees an
/// early end of input and exits 0: the size check is what keeps half a file from being
/// installed.
fn write_file(path: &str, len: usize) -> String {
    let tmp = temp_of(path);
    format!(
        "{{ cp -p {path} {tmp} 2>/dev/null || :; }} && cat > {tmp} && [ \"$(wc -c < {tmp})\" -eq {len} ] && mv -f {tmp} {path} || {{ rm -f {tmp}; exit 1; }}"
    )
}

/// The file and byte count of a [`write_system`] or [`write_running`] command (for the lab).
pub fn parse_write(command: &str) -> Option<(&'static str, usize)> {
    for path in [SYSTEM_CFG, RUNNING_CFG] {
        let tmp = temp_of(path);
        let head = format!(
            "{{ cp -p {path} {tmp} 2>/dev/null || :; }} && cat > {tmp} && [ \"$(wc -c < {tmp})\" -eq "
        );
        let Some(rest) = command.strip_prefix(&head) else {
            continue;
        };
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let len: usize = digits.parse().ok()?;
        return (write_file(path, len) == command).then_some((path, len));
    }
    None
}

/// Persists `/tmp/system.cfg` to flash.
pub const PERSIST: &str = "cfgmtd -w -p /etc/";

/// Lists processes (busybox `ps`: `PID USER VSZ STAT COMMAND`). Parsed by [`bridge_pids`].
pub const PS: &str = "ps";

/// Files [`READ`] prints, in order.
pub const SYSTEM_CFG: &str = "/tmp/system.cfg";
/// The running configuration.
pub const RUNNING_CFG: &str = "/tmp/running.cfg";
/// Board identity (airOS 6 and 8).
pub const BOARD_INFO: &str = "/etc/board.info";
/// Board identity where `/etc/board.info` is missing.
pub const BOARD_INFO_PROC: &str = "/proc/ubnthal/board.info";
/// Firmware version.
pub const VERSION: &str = "/etc/version";
/// Every file [`READ`] covers, in its order.
pub const READ_FILES: [&str; 5] = [
    SYSTEM_CFG,
    RUNNING_CFG,
    BOARD_INFO,
    BOARD_INFO_PROC,
    VERSION,
];

/// `kill -9 PID` for a process id [`bridge_pids`] found.
pub fn kill(pid: u32) -> String {
    format!("kill -9 {pid}")
}

/// What [`READ`] printed: each file's bytes, `None` when it does not exist.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Files {
    /// `(path, content)` in [`READ_FILES`] order, for the files that exist.
    pub files: Vec<(String, Vec<u8>)>,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Content holds keys and password hashes: lengths only.
        let mut l = f.debug_map();
        for (p, c) in &self.files {
            l.entry(p, &format_args!("({} bytes)", c.len()));
        }
        l.finish()
    }
}

impl Files {
    /// A file's content, when it exists.
    pub fn get(&self, path: &str) -> Option<&[u8]> {
        self.files
            .iter()
            .find(|(p, _)| p == path)
            .map(|(_, c)| c.as_slice())
    }
}

/// What [`READ`]'s output cannot be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadError {
    /// A line that is neither header form, or a header for an unexpected file.
    #[error("unexpected output from the read command (line {line})")]
    Unexpected {
        /// 1-based header number.
        line: usize,
    },
    /// A header announced more bytes than followed (the file changed while being read, or the
    /// output was cut).
    #[error("{path}: the output ended {missing} bytes early (the file changed while read?)")]
    Truncated {
        /// The file.
        path: String,
        /// Bytes missing.
        missing: usize,
    },
}

/// Parses [`READ`]'s output.
pub fn parse_read(out: &[u8]) -> Result<Files, ReadError> {
    let mut files = Vec::new();
    let mut rest = out;
    let mut n = 0;
    while !rest.is_empty() {
        n += 1;
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(ReadError::Unexpected { line: n })?;
        let header =
            std::str::from_utf8(&rest[..end]).map_err(|_| ReadError::Unexpected { line: n })?;
        rest = &rest[end + 1..];
        if let Some(path) = header.strip_prefix("wispctl-none ") {
            if !READ_FILES.contains(&path) {
                return Err(ReadError::Unexpected { line: n });
            }
            continue;
        }
        let Some(h) = header.strip_prefix("wispctl-file ") else {
            return Err(ReadError::Unexpected { line: n });
        };
        let (path, len) = h.split_once(' ').ok_or(ReadError::Unexpected { line: n })?;
        let len: usize = len
            .trim()
            .parse()
            .map_err(|_| ReadError::Unexpected { line: n })?;
        if !READ_FILES.contains(&path) {
            return Err(ReadError::Unexpected { line: n });
        }
        if rest.len() < len {
            return Err(ReadError::Truncated {
                path: path.into(),
                missing: len - rest.len(),
            });
        }
        files.push((path.to_string(), rest[..len].to_vec()));
        rest = &rest[len..];
    }
    Ok(Files { files })
}

/// Renders files the way [`READ`] prints them (for the lab and tests).
pub fn render_read(files: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, content) in files {
        match content {
            Some(c) => {
                out.extend_from_slice(format!("wispctl-file {path} {}\n", c.len()).as_bytes());
                out.extend_from_slice(c);
            }
            None => out.extend_from_slice(format!("wispctl-none {path}\n").as_bytes()),
        }
    }
    out
}

/// The process ids of `udapi-bridge` in `ps` output: the lines whose program (the first word of
/// the command, after busybox's `{comm}` prefix when present) is named `udapi-bridge`. Its
/// supervisor (a shell or another program with `udapi-bridge` only as an argument) never
/// matches, nor does PID 1.
pub fn bridge_pids(ps: &str) -> Vec<u32> {
    let mut lines = ps.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let columns = header.split_whitespace().count();
    if columns < 2 || !header.split_whitespace().any(|c| c == "PID") {
        return Vec::new();
    }
    let mut out = Vec::new();
    for line in lines {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.len() < columns {
            continue;
        }
        let Ok(pid) = words[0].parse::<u32>() else {
            continue;
        };
        let mut command = words[columns - 1..].iter();
        let mut program = command.next().copied().unwrap_or_default();
        if program.starts_with('{') && program.ends_with('}') {
            program = command.next().copied().unwrap_or_default();
        }
        let name = program.rsplit('/').next().unwrap_or_default();
        if name == "udapi-bridge" && pid > 1 {
            out.push(pid);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_output_round_trips_and_keeps_bytes() {
        let sys = b"a=1\nunms.uri=wss://x:443+k\n\xe9=\xff\n";
        let ver = b"XW.v6.2.0"; // no trailing newline: the next header follows directly
        let out = render_read(&[
            (SYSTEM_CFG, Some(sys)),
            (RUNNING_CFG, None),
            (BOARD_INFO, Some(b"board.hwaddr=F09FC2112233\n")),
            (BOARD_INFO_PROC, None),
            (VERSION, Some(ver)),
        ]);
        let f = parse_read(&out).unwrap();
        assert_eq!(f.get(SYSTEM_CFG), Some(&sys[..]));
        assert_eq!(f.get(RUNNING_CFG), None);
        assert_eq!(f.get(VERSION), Some(&ver[..]));
        assert!(!format!("{f:?}").contains("unms"));
    }

    #[test]
    fn busybox_wc_padding_is_accepted_and_short_output_refused() {
        let out = b"wispctl-file /etc/version       3\nabc";
        assert_eq!(parse_read(out).unwrap().get(VERSION), Some(&b"abc"[..]));
        assert_eq!(
            parse_read(b"wispctl-file /etc/version 9\nabc"),
            Err(ReadError::Truncated {
                path: VERSION.into(),
                missing: 6
            })
        );
        assert!(parse_read(b"wispctl-file /etc/shadow 1\nx").is_err());
        assert!(parse_read(b"sh: wc: not found\n").is_err());
    }

    #[test]
    fn only_the_bridge_itself_is_found() {
        let ps = "  PID USER       VSZ STAT COMMAND\n    1 root      1780 S    init\n  700 root      1000 S    /bin/sh /sbin/supervise /bin/udapi-bridge\n  812 root      9000 S    {exe} /bin/udapi-bridge\n  813 root      9000 S    {sleep} /bin/udapi-bridge 100000\n  900 root      1000 R    grep udapi-bridge\n  901 ubnt      1000 S    /bin/udapi-bridge-helper\n";
        assert_eq!(bridge_pids(ps), vec![812, 813]);
        assert_eq!(bridge_pids(""), Vec::<u32>::new());
        assert_eq!(bridge_pids("sh: ps: not found\n"), Vec::<u32>::new());
        // procps layout
        let procps = "    PID TTY          TIME CMD\n   4242 ?        00:00:00 udapi-bridge\n";
        assert_eq!(bridge_pids(procps), vec![4242]);
    }

    #[test]
    fn kill_takes_only_a_number() {
        assert_eq!(kill(812), "kill -9 812");
    }

    #[test]
    fn writes_carry_their_size_and_parse_back() {
        assert_eq!(
            write_system(42),
            "{ cp -p /tmp/system.cfg /tmp/.wispctl.system.cfg 2>/dev/null || :; } && cat > /tmp/.wispctl.system.cfg && [ \"$(wc -c < /tmp/.wispctl.system.cfg)\" -eq 42 ] && mv -f /tmp/.wispctl.system.cfg /tmp/system.cfg || { rm -f /tmp/.wispctl.system.cfg; exit 1; }"
        );
        assert_eq!(parse_write(&write_system(42)), Some((SYSTEM_CFG, 42)));
        assert_eq!(parse_write(&write_running(0)), Some((RUNNING_CFG, 0)));
        assert_eq!(
            parse_write(&write_running(7).replace("-eq 7", "-eq 7;id")),
            None
        );
        assert_eq!(parse_write(READ), None);
    }
}
