//! Real third-party SSH peers that behave like an old airOS fleet, for interop tests.
//!
//! [`Peers::start`] starts N "antennas" and one jump host, all on 127.0.0.0/8:
//!
//! - Antenna `i`: Debian's OpenSSH `sshd` on `127.0.0.(20+i)`, on a free port (not 22, so that
//!   two sets of peers never collide), restricted to what old airOS offers (`ssh-rsa` host key,
//!   RSA 2048 generated per antenna, `diffie-hellman-group14-sha1`/`group1-sha1`, AES-CTR/CBC and
//!   3DES, `hmac-sha1`/`hmac-md5`), password logins only, no PAM. It runs as PID 1 of its own
//!   PID and mount namespaces (`unshare -m -p -f --kill-child --propagation private`) with a
//!   private tmpfs `/run` holding a busybox-static chroot (`ChrootDirectory`): the login shell
//!   is busybox `ash`, `ps` shows only that namespace's processes, `/tmp` is the antenna's own
//!   folder ([`Antenna::dir`]: `system.cfg`, `running.cfg`), `/persist` its "flash" (holding
//!   the starting `system.cfg`, as a device's flash holds what it booted with), `/etc` holds
//!   `board.info` and `version`, and `/sbin/cfgmtd` is a fake that logs its arguments; for
//!   exactly `-w -p /etc/` it copies `/tmp/system.cfg` to flash (or fails while
//!   [`Antenna::set_persist_fails`] says so), for `-r -f FILE` it writes the flash copy to
//!   `FILE`. `/sbin` is where airOS keeps `cfgmtd`, and it is not on the `PATH` OpenSSH gives a
//!   login user (`/usr/local/bin:/usr/bin:/bin:/usr/games`), as it is not on old dropbear's
//!   `/usr/bin:/bin`: `cfgmtd` by bare name is not found there, as on the field's units. The
//!   chroot is on the namespace's private tmpfs, so placing it at `/sbin` touches nothing on
//!   this machine; [`Antenna::remove_cfgmtd`] takes it away.
//! - A fake `udapi-bridge`: a supervisor in the namespace keeps one child alive whose `ps` line
//!   is `{exe} /bin/udapi-bridge infinity`, running as the login user (so that `kill -9` from
//!   the SSH session works), and respawns it about 0.2 s after it dies. Each start reads
//!   `unms.uri` from `running.cfg` when present, else from `system.cfg`, and is recorded
//!   ([`Antenna::bridge_starts`]). The supervisor's own `ps` line holds `/bin/udapi-bridge`
//!   only as an argument.
//! - The jump host: dropbear on `127.0.0.1` (free port, ed25519 host key, password login, local
//!   TCP forwarding allowed, sessions forced to `/bin/false`), in a PID namespace of its own.
//!
//! Each antenna has its own user (`wispctl-air-PID-SEQ-I`) and random password; the jump host
//! its own (`...-j`). Users are created with `useradd` and removed on drop.
//!
//! Cleanup: dropping [`Peers`] kills every namespace (so every sshd, session, supervisor and
//! bridge), removes the users and deletes the folder. Mounts exist only inside the namespaces.
//! Processes are spawned from one long-lived thread with a parent-death signal, so they also
//! die when the test process dies without dropping; users and folders left by a test process
//! that died are removed by the next [`Peers::start`].
//!
//! Needs root, `/usr/sbin/sshd` (openssh-server), `dropbear`/`dropbearkey` (dropbear-bin), a
//! static busybox (busybox-static), util-linux (`unshare`, `setpriv`), `ssh-keygen`, `useradd`:
//! tests/setup.sh installs them. Without them [`Peers::start`] returns `None` after printing
//! why, except under `CI=true`, where it panics.
#![allow(dead_code)]

use std::io::Write as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{PermissionsExt, chown};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

use wispctl::secret::Secret;
use wispctl::ssh::{Credential, Endpoint, Target};

const ANTENNA_SH: &str = include_str!("antenna.sh");
const SUPERVISE_SH: &str = include_str!("supervise.sh");
const CFGMTD_SH: &str = include_str!("cfgmtd.sh");

const SSHD: &str = "/usr/sbin/sshd";
const USER_PREFIX: &str = "wispctl-air-";
const DIR_PREFIX: &str = "wispctl-airos-";
/// How long an sshd, a bridge or dropbear may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// The files an antenna starts with.
#[derive(Clone, Debug)]
pub struct AntennaFiles {
    /// `/tmp/system.cfg`.
    pub system_cfg: Vec<u8>,
    /// `/tmp/running.cfg`, `None` for no file.
    pub running_cfg: Option<Vec<u8>>,
    /// `/etc/board.info`.
    pub board_info: Vec<u8>,
    /// `/etc/version`.
    pub version: Vec<u8>,
}

impl AntennaFiles {
    /// A LiteBeam M5 on XW.v6.2.0 (MAC `F0:9F:C2:10:00:ii`) connected to
    /// `wss://uisp.example.net:443+KEY-i+allowSelfSignedCertificate`, `running.cfg` equal to
    /// `system.cfg`.
    pub fn default_for(i: usize) -> AntennaFiles {
        let system = format!(
            "aaa.status=disabled\n\
             netconf.1.ip=10.10.1.{ip}\n\
             resolv.host.1.name=cpe-{i}\n\
             unms.status=enabled\n\
             unms.uri=wss://uisp.example.net:443+KEY-{i}+allowSelfSignedCertificate\n\
             users.1.name=ubnt\n\
             users.1.password=$1$abcdefgh$0123456789abcdefghijk.\n",
            ip = 20 + i,
        )
        .into_bytes();
        AntennaFiles {
            running_cfg: Some(system.clone()),
            system_cfg: system,
            board_info: format!(
                "board.sysid=0xe2c5\nboard.name=LiteBeam M5\nboard.shortname=LBE5\n\
                 board.hwaddr=F09FC21000{:02X}\n",
                i % 256
            )
            .into_bytes(),
            version: b"XW.v6.2.0\n".to_vec(),
        }
    }
}

/// One start of the fake `udapi-bridge`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeStart {
    /// `running.cfg` or `system.cfg`: the file it read.
    pub source: String,
    /// The `unms.uri` value it read (empty when the file had none).
    pub uri: String,
    /// Its PID as the antenna's `ps` shows it.
    pub pid: u32,
}

/// One running fake antenna. Fields are what a test needs to reach it.
pub struct Antenna {
    /// `127.0.0.(20+i)`.
    pub host: String,
    /// The sshd port on `host`.
    pub port: u16,
    /// The antenna's `/tmp` on this machine (`system.cfg`, `running.cfg`).
    pub dir: PathBuf,
    /// The host key's fingerprint, `SHA256:...` as `ssh-keygen -lf` prints it.
    pub fingerprint: String,
    /// The login user.
    pub user: String,
    /// Its password.
    pub password: String,
    index: usize,
    base: PathBuf,
    uid: u32,
    gid: u32,
    busybox: PathBuf,
    unshare: Option<Child>,
    /// The namespace's PID 1 as seen from here.
    init_pid: u32,
}

/// The jump host (dropbear).
pub struct Jump {
    /// `127.0.0.1`.
    pub host: String,
    /// Its port.
    pub port: u16,
    /// `host:port`.
    pub addr: SocketAddr,
    /// The host key's fingerprint, `SHA256:...`.
    pub fingerprint: String,
    /// The login user.
    pub user: String,
    /// Its password.
    pub password: String,
    base: PathBuf,
    unshare: Option<Child>,
}

/// A set of antennas and a jump host; dropping it removes every trace of them.
pub struct Peers {
    base: PathBuf,
    antennas: Vec<Antenna>,
    jump: Option<Jump>,
    users: Vec<String>,
}

impl Peers {
    /// Starts `n` antennas with [`AntennaFiles::default_for`] and a jump host. `None` (after
    /// printing why) when this machine cannot run them and `CI` is not `true`.
    pub fn start(n: usize) -> Option<Peers> {
        Peers::start_with((0..n).map(AntennaFiles::default_for).collect())
    }

    /// Starts one antenna per entry of `files`, and a jump host.
    pub fn start_with(files: Vec<AntennaFiles>) -> Option<Peers> {
        let busybox = match prerequisites() {
            Ok(b) => b,
            Err(why) => {
                if std::env::var("CI").is_ok_and(|v| v == "true") {
                    panic!("airOS peers cannot run under CI=true: {why} (run tests/setup.sh)");
                }
                eprintln!(
                    "SKIPPED: airOS peers cannot run here: {why} (run tests/setup.sh as root)"
                );
                return None;
            }
        };
        assert!(files.len() <= 200, "at most 200 antennas (127.0.0.20-219)");
        remove_stale();
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let seq = SEQ.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let base = std::env::temp_dir().join(format!("{DIR_PREFIX}{pid}-{seq}"));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir(&base).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).unwrap();
        let mut peers = Peers {
            base: base.clone(),
            antennas: Vec::new(),
            jump: None,
            users: Vec::new(),
        };
        for (i, f) in files.into_iter().enumerate() {
            let user = format!("{USER_PREFIX}{pid}-{seq}-{i}");
            let password = random_password();
            peers.users.push(user.clone());
            let (uid, gid) = add_user(&user, &password);
            let antenna = Antenna::create(i, &base, user, password, uid, gid, &busybox, &f);
            peers.antennas.push(antenna);
        }
        // Start them all, then wait for them all (faster than one by one).
        for a in &mut peers.antennas {
            a.spawn();
        }
        for a in &peers.antennas {
            a.wait_ready(1, 1);
        }
        let user = format!("{USER_PREFIX}{pid}-{seq}-j");
        let password = random_password();
        peers.users.push(user.clone());
        add_user(&user, &password);
        peers.jump = Some(Jump::start(&base.join("jump"), user, password));
        Some(peers)
    }

    /// Antenna `i`.
    pub fn antenna(&self, i: usize) -> &Antenna {
        &self.antennas[i]
    }

    /// Antenna `i`, to change its host key.
    pub fn antenna_mut(&mut self, i: usize) -> &mut Antenna {
        &mut self.antennas[i]
    }

    /// Every antenna.
    pub fn antennas(&self) -> &[Antenna] {
        &self.antennas
    }

    /// The jump host.
    pub fn jump(&self) -> &Jump {
        self.jump.as_ref().expect("started")
    }

    /// Known-hosts lines (`HOST:PORT SHA256:...`) for every antenna and the jump host.
    pub fn known_hosts_text(&self) -> String {
        let mut s = String::new();
        for a in &self.antennas {
            s.push_str(&format!("{} {}\n", a.endpoint(), a.fingerprint));
        }
        if let Some(j) = &self.jump {
            s.push_str(&format!("{} {}\n", j.endpoint(), j.fingerprint));
        }
        s
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        for a in &mut self.antennas {
            a.stop();
        }
        if let Some(j) = &mut self.jump {
            j.stop();
        }
        for u in &self.users {
            del_user(u);
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

impl Antenna {
    #[allow(clippy::too_many_arguments)]
    fn create(
        index: usize,
        base: &Path,
        user: String,
        password: String,
        uid: u32,
        gid: u32,
        busybox: &Path,
        files: &AntennaFiles,
    ) -> Antenna {
        let base = base.join(format!("antenna-{index}"));
        for d in ["etc", "bin", "tmp", "persist", "state"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(base.join("state"), std::fs::Permissions::from_mode(0o700))
            .unwrap();
        for d in ["tmp", "persist"] {
            chown(base.join(d), Some(uid), Some(gid)).unwrap();
            std::fs::set_permissions(base.join(d), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let dir = base.join("tmp");
        write_owned(&dir.join("system.cfg"), &files.system_cfg, uid, gid);
        std::fs::write(base.join("persist/system.cfg"), &files.system_cfg).unwrap();
        if let Some(r) = &files.running_cfg {
            write_owned(&dir.join("running.cfg"), r, uid, gid);
        }
        std::fs::write(base.join("etc/board.info"), &files.board_info).unwrap();
        std::fs::write(base.join("etc/version"), &files.version).unwrap();
        std::fs::write(base.join("bin/antenna.sh"), ANTENNA_SH).unwrap();
        std::fs::write(base.join("bin/supervise.sh"), SUPERVISE_SH).unwrap();
        std::fs::write(base.join("bin/cfgmtd"), CFGMTD_SH).unwrap();

        let host = format!("127.0.0.{}", 20 + index);
        let port = free_port(host.parse().unwrap());
        let key = base.join("etc/ssh_host_rsa_key");
        let fingerprint = new_rsa_key(&key);
        let config = format!(
            "ListenAddress {host}:{port}\n\
             HostKey {key}\n\
             HostKeyAlgorithms ssh-rsa\n\
             KexAlgorithms diffie-hellman-group14-sha1,diffie-hellman-group1-sha1\n\
             Ciphers aes128-ctr,aes256-ctr,aes128-cbc,3des-cbc\n\
             MACs hmac-sha1,hmac-md5\n\
             PasswordAuthentication yes\n\
             PermitEmptyPasswords no\n\
             PubkeyAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             UsePAM no\n\
             PermitRootLogin no\n\
             AllowUsers {user}\n\
             AuthorizedKeysFile none\n\
             ChrootDirectory /run/chroot\n\
             AllowTcpForwarding no\n\
             AllowAgentForwarding no\n\
             X11Forwarding no\n\
             PermitTunnel no\n\
             PrintMotd no\n\
             PrintLastLog no\n\
             UseDNS no\n\
             PidFile none\n\
             LogLevel VERBOSE\n",
            key = key.display(),
        );
        std::fs::write(base.join("etc/sshd_config"), config).unwrap();
        Antenna {
            host,
            port,
            dir,
            fingerprint,
            user,
            password,
            index,
            base,
            uid,
            gid,
            busybox: busybox.to_path_buf(),
            unshare: None,
            init_pid: 0,
        }
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.base.join("state/init.log")).unwrap();
        let mut cmd = owned_command("unshare");
        cmd.args(["-m", "-p", "-f", "--kill-child", "--propagation", "private"])
            .arg("bash")
            .arg(self.base.join("bin/antenna.sh"))
            .arg(&self.base)
            .arg(&self.user)
            .arg(self.uid.to_string())
            .arg(self.gid.to_string())
            .arg(&self.busybox)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        let child = spawn_owned(cmd).expect("unshare starts");
        let unshare_pid = child.id();
        self.unshare = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        self.init_pid = loop {
            if let Some(p) = child_of(unshare_pid) {
                break p;
            }
            assert!(
                Instant::now() < deadline,
                "antenna {}: no namespace init under unshare: {}",
                self.index,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(10));
        };
    }

    /// Waits until sshd has said `Server listening` `listening` times and the bridge has
    /// started `bridges` times.
    fn wait_ready(&self, listening: usize, bridges: usize) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let up = self.sshd_log().matches("Server listening on").count() >= listening
                && self.bridge_starts().len() >= bridges;
            if up {
                return;
            }
            let dead = !Path::new(&format!("/proc/{}", self.init_pid)).exists();
            assert!(
                Instant::now() < deadline && !dead,
                "antenna {} did not come up: {}",
                self.index,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn logs(&self) -> String {
        format!(
            "init: {:?}; sshd: {:?}",
            std::fs::read_to_string(self.base.join("state/init.log")).unwrap_or_default(),
            self.sshd_log()
        )
    }

    fn stop(&mut self) {
        kill_namespace(self.unshare.take(), self.init_pid);
        self.init_pid = 0;
    }

    /// Index in [`Peers`].
    pub fn index(&self) -> usize {
        self.index
    }

    /// `host:port` as the client names it.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::new(self.host.clone(), self.port)
    }

    /// The antenna's own login.
    pub fn credential(&self) -> Credential {
        Credential {
            user: self.user.clone(),
            password: Secret::new(self.password.clone()),
        }
    }

    /// A direct legacy target with the antenna's own credential and 10 s / 20 s timeouts.
    pub fn target(&self) -> Target {
        let mut t = Target::new(self.endpoint(), vec![self.credential()]);
        t.legacy = true;
        t.connect_timeout = Duration::from_secs(10);
        t.command_timeout = Duration::from_secs(20);
        t
    }

    /// [`Antenna::target`] reached through `jump`.
    pub fn target_via(&self, jump: &Jump) -> Target {
        let mut t = self.target();
        t.jump = Some(Box::new(jump.target()));
        t
    }

    /// The folder the antenna's chroot is seen through from here (`/proc/PID/root/run/chroot`),
    /// while it runs: its `/etc`, `/bin`, ... (`/tmp` there is [`Antenna::dir`]).
    pub fn chroot(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root/run/chroot", self.init_pid))
    }

    /// `/tmp/system.cfg` now.
    pub fn system_cfg(&self) -> Option<Vec<u8>> {
        std::fs::read(self.dir.join("system.cfg")).ok()
    }

    /// `/tmp/running.cfg` now.
    pub fn running_cfg(&self) -> Option<Vec<u8>> {
        std::fs::read(self.dir.join("running.cfg")).ok()
    }

    /// Writes `/tmp/<name>` as the login user owns it.
    pub fn write_tmp(&self, name: &str, content: &[u8]) {
        write_owned(&self.dir.join(name), content, self.uid, self.gid);
    }

    /// The flash copy: the starting `system.cfg`, then what `cfgmtd -w -p /etc/` last
    /// persisted.
    pub fn flash(&self) -> Option<Vec<u8>> {
        std::fs::read(self.base.join("persist/system.cfg")).ok()
    }

    /// Makes `cfgmtd -w -p /etc/` fail (`Could not open MTD device cfg`, exit 1, the flash left
    /// as it was) while `fails`.
    pub fn set_persist_fails(&self, fails: bool) {
        let flag = self.base.join("persist/fail-write");
        if fails {
            std::fs::write(flag, b"").unwrap();
        } else {
            let _ = std::fs::remove_file(flag);
        }
    }

    /// Removes `/sbin/cfgmtd` from the antenna's chroot (while it runs).
    pub fn remove_cfgmtd(&self) {
        std::fs::remove_file(self.chroot().join("sbin/cfgmtd")).unwrap();
    }

    /// The argument lines `cfgmtd` was called with, in order.
    pub fn cfgmtd_log(&self) -> Vec<String> {
        read_lines(&self.base.join("persist/cfgmtd.log"))
    }

    /// The `unms.uri` each bridge start read, in order.
    pub fn bridge_log(&self) -> Vec<String> {
        self.bridge_starts().into_iter().map(|b| b.uri).collect()
    }

    /// Every bridge start, in order (the first is at antenna start).
    pub fn bridge_starts(&self) -> Vec<BridgeStart> {
        read_lines(&self.base.join("state/bridge.log"))
            .into_iter()
            .filter_map(|l| {
                let mut f = l.splitn(3, '\t');
                let source = f.next()?.to_string();
                let uri = f.next()?.to_string();
                let pid = f.next()?.parse().ok()?;
                Some(BridgeStart { source, uri, pid })
            })
            .collect()
    }

    /// Waits (up to `timeout`) until the bridge has started at least `n` times, and returns the
    /// starts.
    pub fn wait_bridge_starts(&self, n: usize, timeout: Duration) -> Vec<BridgeStart> {
        let deadline = Instant::now() + timeout;
        loop {
            let starts = self.bridge_starts();
            if starts.len() >= n || Instant::now() >= deadline {
                return starts;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// sshd's log (`-e`, LogLevel VERBOSE).
    pub fn sshd_log(&self) -> String {
        std::fs::read_to_string(self.base.join("state/sshd.log")).unwrap_or_default()
    }

    /// Replaces the host key with a new RSA 2048 one and restarts sshd (SIGHUP: it re-executes
    /// itself and reloads the key; the bridge and the files are untouched). Returns the new
    /// fingerprint, also in [`Antenna::fingerprint`].
    pub fn regenerate_host_key(&mut self) -> String {
        let key = self.base.join("etc/ssh_host_rsa_key");
        let _ = std::fs::remove_file(&key);
        let _ = std::fs::remove_file(key.with_extension("pub"));
        self.fingerprint = new_rsa_key(&key);
        let before = self.sshd_log().matches("Server listening on").count();
        let sshd = children_of(self.init_pid)
            .into_iter()
            .find(|p| {
                std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e == Path::new(SSHD))
            })
            .unwrap_or_else(|| panic!("antenna {}: no sshd: {}", self.index, self.logs()));
        signal(sshd, "HUP");
        self.wait_ready(before + 1, 0);
        self.fingerprint.clone()
    }
}

impl Drop for Antenna {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Jump {
    fn start(base: &Path, user: String, password: String) -> Jump {
        std::fs::create_dir_all(base).unwrap();
        let key = base.join("dropbear_ed25519_host_key");
        run(Command::new("dropbearkey")
            .args(["-t", "ed25519", "-f"])
            .arg(&key));
        let public = run(Command::new("dropbearkey").arg("-y").arg("-f").arg(&key));
        let line = public
            .lines()
            .find(|l| l.starts_with("ssh-"))
            .expect("dropbearkey -y prints the public key")
            .to_string();
        let pubfile = base.join("host_key.pub");
        std::fs::write(&pubfile, format!("{line}\n")).unwrap();
        let fingerprint = fingerprint_of(&pubfile);
        let host = "127.0.0.1".to_string();
        let port = free_port(Ipv4Addr::LOCALHOST);
        let log = std::fs::File::create(base.join("dropbear.log")).unwrap();
        let mut cmd = owned_command("unshare");
        cmd.args([
            "-p",
            "-f",
            "--kill-child",
            "dropbear",
            "-F",
            "-E",
            "-m",
            "-w",
            "-k",
        ])
        .args(["-c", "/bin/false", "-p"])
        .arg(format!("{host}:{port}"))
        .arg("-r")
        .arg(&key)
        .arg("-P")
        .arg(base.join("dropbear.pid"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
        let child = spawn_owned(cmd).expect("unshare dropbear starts");
        let addr = SocketAddr::new(host.parse().unwrap(), port);
        let mut jump = Jump {
            host,
            port,
            addr,
            fingerprint,
            user,
            password,
            base: base.to_path_buf(),
            unshare: Some(child),
        };
        let deadline = Instant::now() + START_TIMEOUT;
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            let exited = jump
                .unshare
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            assert!(
                Instant::now() < deadline && exited.is_none(),
                "dropbear did not come up: {:?}",
                std::fs::read_to_string(base.join("dropbear.log"))
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        jump
    }

    fn stop(&mut self) {
        if let Some(c) = self.unshare.take() {
            let init = child_of(c.id()).unwrap_or(0);
            kill_namespace(Some(c), init);
        }
    }

    /// `host:port`.
    pub fn endpoint(&self) -> Endpoint {
        Endpoint::new(self.host.clone(), self.port)
    }

    /// The jump host's login.
    pub fn credential(&self) -> Credential {
        Credential {
            user: self.user.clone(),
            password: Secret::new(self.password.clone()),
        }
    }

    /// A direct, non-legacy target for the jump host itself.
    pub fn target(&self) -> Target {
        let mut t = Target::new(self.endpoint(), vec![self.credential()]);
        t.connect_timeout = Duration::from_secs(10);
        t
    }

    /// dropbear's log.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.base.join("dropbear.log")).unwrap_or_default()
    }
}

impl Drop for Jump {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What is missing, or the static busybox to use.
fn prerequisites() -> Result<PathBuf, String> {
    if effective_uid() != Some(0) {
        return Err("not root".into());
    }
    let mut missing = Vec::new();
    if !Path::new(SSHD).is_file() {
        missing.push("/usr/sbin/sshd (openssh-server)");
    }
    for (tool, package) in [
        ("dropbear", "dropbear-bin"),
        ("dropbearkey", "dropbear-bin"),
        ("ssh-keygen", "openssh-client"),
        ("unshare", "util-linux"),
        ("setpriv", "util-linux"),
        ("useradd", "passwd"),
        ("chpasswd", "passwd"),
        ("userdel", "passwd"),
        ("chroot", "coreutils"),
        ("bash", "bash"),
        ("kill", "procps"),
    ] {
        if which(tool).is_none() {
            missing.push(if tool.starts_with("dropbear") {
                "dropbear (dropbear-bin)"
            } else {
                package
            });
        }
    }
    let busybox = ["/bin/busybox", "/usr/bin/busybox"]
        .iter()
        .map(PathBuf::from)
        .find(|p| is_static(p));
    if busybox.is_none() {
        missing.push("a static busybox (busybox-static)");
    }
    let sshd_user = Command::new("getent")
        .args(["passwd", "sshd"])
        .stdout(Stdio::null())
        .status();
    if !sshd_user.is_ok_and(|s| s.success()) {
        missing.push("the sshd privilege separation user (openssh-server)");
    }
    missing.dedup();
    if missing.is_empty() {
        Ok(busybox.unwrap())
    } else {
        Err(format!("missing {}", missing.join(", ")))
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

/// Whether `path` is an ELF executable without a program interpreter (statically linked).
fn is_static(path: &Path) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(32), u16_at(54), u16_at(56));
    (0..phnum).all(|i| {
        let o = phoff + i * phentsize;
        // PT_INTERP = 3
        o + 4 <= bytes.len() && u32::from_le_bytes(bytes[o..o + 4].try_into().unwrap()) != 3
    })
}

/// Runs a command to completion; panics with its output when it fails. Returns stdout.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}: {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Generates an RSA 2048 key at `key` (and `key.pub`); returns its SHA-256 fingerprint.
fn new_rsa_key(key: &Path) -> String {
    run(Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "rsa",
            "-b",
            "2048",
            "-N",
            "",
            "-C",
            "wispctl-airos-test",
            "-f",
        ])
        .arg(key));
    fingerprint_of(&key.with_extension("pub"))
}

fn fingerprint_of(public: &Path) -> String {
    let out = run(Command::new("ssh-keygen")
        .args(["-E", "sha256", "-lf"])
        .arg(public));
    out.split_whitespace()
        .find(|w| w.starts_with("SHA256:"))
        .unwrap_or_else(|| panic!("ssh-keygen -lf printed {out:?}"))
        .to_string()
}

/// A port free on `ip` now.
fn free_port(ip: Ipv4Addr) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("no free port on {ip}: {e}"))
        .port()
}

fn random_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut b = [0u8; 24];
    getrandom::fill(&mut b).expect("the OS random source");
    b.iter()
        .map(|x| ALPHABET[*x as usize % ALPHABET.len()] as char)
        .collect()
}

/// `useradd` (no home folder created, shell `/bin/sh`, which in an antenna's chroot is busybox)
/// and `chpasswd`; returns the uid and gid. Retries while another process holds the lock on
/// /etc/passwd.
fn add_user(name: &str, password: &str) -> (u32, u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("useradd")
            .args(["-M", "-U", "-s", "/bin/sh", "-d"])
            .arg(format!("/home/{name}"))
            .arg(name)
            .stdin(Stdio::null())
            .output()
            .expect("useradd runs");
        if out.status.success() {
            break;
        }
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            err.contains("lock") && Instant::now() < deadline,
            "useradd {name}: {err}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut child = Command::new("chpasswd")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("chpasswd runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{name}:{password}\n").as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success(), "chpasswd {name}");
    let id = |flag: &str| -> u32 {
        run(Command::new("id").arg(flag).arg(name))
            .trim()
            .parse()
            .unwrap()
    };
    (id("-u"), id("-g"))
}

fn del_user(name: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("userdel")
            .arg(name)
            .stdin(Stdio::null())
            .output();
        match out {
            Ok(o) if o.status.success() => return,
            Ok(o) => {
                let err = String::from_utf8_lossy(&o.stderr).into_owned();
                if err.contains("does not exist") {
                    return;
                }
                if Instant::now() >= deadline {
                    eprintln!("airos_peer: userdel {name}: {err}");
                    return;
                }
            }
            Err(e) => {
                eprintln!("airos_peer: userdel {name}: {e}");
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Removes users and folders left by test processes that died without dropping their peers.
fn remove_stale() {
    let alive = |pid: &str| Path::new(&format!("/proc/{pid}")).exists();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    for line in passwd.lines() {
        let name = line.split(':').next().unwrap_or_default();
        if let Some(rest) = name.strip_prefix(USER_PREFIX) {
            let pid = rest.split('-').next().unwrap_or_default();
            if !pid.is_empty() && !alive(pid) {
                del_user(name);
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(rest) = name.strip_prefix(DIR_PREFIX) {
                let pid = rest.split('-').next().unwrap_or_default();
                if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) && !alive(pid) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
    }
}

fn write_owned(path: &Path, content: &[u8], uid: u32, gid: u32) {
    std::fs::write(path, content).unwrap();
    chown(path, Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The PIDs whose parent is `parent`.
fn children_of(parent: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`; comm may hold spaces and parentheses.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let ppid = after.split_whitespace().nth(1).and_then(|p| p.parse().ok());
        if ppid == Some(parent) {
            out.push(pid);
        }
    }
    out
}

fn child_of(parent: u32) -> Option<u32> {
    children_of(parent).into_iter().next()
}

/// Ends a namespace: SIGKILL to its PID 1 `init` (which kills every process in it), then reaps
/// `unshare`, which exits once it has reaped `init`. When `init` is unknown (0), or unshare does
/// not exit, unshare itself is killed (`--kill-child` then kills `init`).
fn kill_namespace(unshare: Option<Child>, init: u32) {
    if init != 0 {
        signal(init, "KILL");
    }
    if let Some(mut c) = unshare {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match c.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) if init == 0 || Instant::now() >= deadline => {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    }
    if init != 0 {
        wait_gone(init);
    }
}

/// Waits until `pid` no longer exists (it has been reaped).
fn wait_gone(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends signal `name` (`HUP`, `KILL`) to `pid` with kill(1); a process already gone is no
/// error.
fn signal(pid: u32, name: &str) {
    let _ = Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// This process's effective user id, from `/proc/self/status` (`Uid: real effective ...`).
fn effective_uid() -> Option<u32> {
    std::fs::read_to_string("/proc/self/status")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A command running `program` with SIGKILL as its parent-death signal: `setpriv --pdeathsig`
/// sets it, then executes `program` in its place (same PID). Spawn it with [`spawn_owned`].
fn owned_command(program: &str) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--pdeathsig", "KILL", "--", program]);
    cmd
}

type SpawnRequest = (Command, mpsc::Sender<std::io::Result<Child>>);

/// Spawns `cmd` (made by [`owned_command`]) from one thread that lives as long as the test
/// process: its parent-death signal fires when that thread ends, so the peers die with the
/// process even when nothing is dropped (a test thread's end would fire the signal too early,
/// hence the dedicated thread).
fn spawn_owned(cmd: Command) -> std::io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("airos-peer-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("a spawner thread");
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    tx.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .send((cmd, reply_tx))
        .expect("the spawner thread runs");
    reply_rx.recv().expect("the spawner thread answers")
}
