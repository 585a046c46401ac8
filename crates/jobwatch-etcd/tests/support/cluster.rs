//! A real etcd cluster for tests: three members on free 127.0.0.1 ports
//! with private data directories, started, faulted (SIGSTOP, SIGKILL,
//! restart) and torn down by PID.
//!
//! Include it from any test crate with
//! `#[path = ".../tests/support/cluster.rs"] mod cluster;`; it needs the
//! dev-dependencies `etcd-client` (feature `tls`), `tokio` (`rt`, `time`),
//! `tempfile`, `rcgen` and `libc`.
//!
//! Guarantees: every member is spawned with `PR_SET_PDEATHSIG = SIGKILL`
//! from a thread that lives as long as the test process, so no etcd
//! outlives a test binary even if it is killed; [`Cluster`]'s `Drop` sends
//! SIGCONT, SIGTERM, waits up to 5 s, then SIGKILL, reaps, and removes the
//! data directories; [`Cluster::shared`] clusters are torn down the same
//! way at process exit.
//!
//! Without an `etcd` binary, [`Cluster::start`] returns `None` after
//! printing why, so the test returns visibly unrun; under `CI=true` it
//! panics instead (CI installs etcd).

#![allow(dead_code)]

use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

/// How long a cluster may take to elect a leader after start or a fault.
pub const HEALTHY_WITHIN: Duration = Duration::from_secs(30);

/// What to start.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Serve clients over TLS with client certificates (`--client-cert-auth`).
    pub tls: bool,
    /// Enable auth with user `root` and this password.
    pub root_password: Option<String>,
}

/// Files of a TLS cluster, all PEM.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA that signed the server and client certificates.
    pub ca: PathBuf,
    /// A client certificate signed by the CA.
    pub client_cert: PathBuf,
    /// Its key.
    pub client_key: PathBuf,
}

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    child: Option<Child>,
    stopped: bool,
    args: Vec<String>,
    log: PathBuf,
}

/// A running cluster.
pub struct Cluster {
    label: String,
    members: Mutex<Vec<Member>>,
    dir: Option<tempfile::TempDir>,
    tls: Option<TlsFiles>,
    root_password: Option<String>,
}

impl Cluster {
    /// Starts three members and waits until they agree on a leader, or
    /// returns `None` (printed) when etcd is not installed outside CI.
    pub fn start(label: &str) -> Option<Cluster> {
        Self::start_with(label, Options::default())
    }

    /// Like [`start`](Self::start) with options.
    pub fn start_with(label: &str, options: Options) -> Option<Cluster> {
        if !etcd_available(label) {
            return None;
        }
        // A port picked free may be taken by another test before etcd binds
        // it: start again with new ports, a bounded number of times.
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(label, &options) {
                Ok(cluster) => return Some(cluster),
                Err(e) => last = e,
            }
        }
        panic!("could not start an etcd cluster for {label}: {last}");
    }

    /// One cluster per test process, shared by the tests that do not fault
    /// it; torn down at process exit. `None` as for [`start`](Self::start).
    pub fn shared() -> Option<&'static Cluster> {
        static SHARED: OnceLock<Option<&'static Cluster>> = OnceLock::new();
        let shared = *SHARED.get_or_init(|| {
            let cluster = Self::start("shared")?;
            let cluster: &'static Cluster = Box::leak(Box::new(cluster));
            register_at_exit(cluster);
            Some(cluster)
        });
        if shared.is_none() {
            // Say it for every test that does not run, not just the first.
            etcd_available("shared");
        }
        shared
    }

    fn try_start(label: &str, options: &Options) -> Result<Cluster, String> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("jobwatch-etcd-{label}-"))
            .tempdir()
            .map_err(|e| e.to_string())?;
        let tls = options
            .tls
            .then(|| make_certificates(dir.path()))
            .transpose()?;
        let ports = free_ports(6)?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let names: Vec<String> = (0..3).map(|i| format!("m{i}")).collect();
        let initial = (0..3)
            .map(|i| format!("{}=http://127.0.0.1:{}", names[i], ports[3 + i]))
            .collect::<Vec<_>>()
            .join(",");
        let token = dir
            .path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut members = Vec::new();
        for i in 0..3 {
            let client = format!("{scheme}://127.0.0.1:{}", ports[i]);
            let peer = format!("http://127.0.0.1:{}", ports[3 + i]);
            let mut args = vec![
                format!("--name={}", names[i]),
                format!("--data-dir={}", dir.path().join(&names[i]).display()),
                format!("--listen-client-urls={client}"),
                format!("--advertise-client-urls={client}"),
                format!("--listen-peer-urls={peer}"),
                format!("--initial-advertise-peer-urls={peer}"),
                format!("--initial-cluster={initial}"),
                format!("--initial-cluster-token={token}"),
                "--initial-cluster-state=new".to_string(),
                "--logger=zap".to_string(),
                "--log-outputs=stderr".to_string(),
            ];
            if let Some(tls) = &tls {
                let d = dir.path();
                args.extend([
                    format!("--cert-file={}", d.join("server.pem").display()),
                    format!("--key-file={}", d.join("server-key.pem").display()),
                    format!("--trusted-ca-file={}", tls.ca.display()),
                    "--client-cert-auth".to_string(),
                ]);
            }
            members.push(Member {
                name: names[i].clone(),
                client_port: ports[i],
                peer_port: ports[3 + i],
                child: None,
                stopped: false,
                args,
                log: dir.path().join(format!("{}.log", names[i])),
            });
        }
        let cluster = Cluster {
            label: label.to_string(),
            members: Mutex::new(members),
            dir: Some(dir),
            tls,
            root_password: None,
        };
        for i in 0..3 {
            cluster.spawn(i).map_err(|e| format!("spawn etcd: {e}"))?;
        }
        if let Err(e) = cluster.try_wait_healthy(HEALTHY_WITHIN) {
            return Err(format!("{e}\n{}", cluster.log_tails()));
        }
        let mut cluster = cluster;
        if let Some(password) = &options.root_password {
            cluster.enable_auth(password);
            cluster.root_password = Some(password.clone());
        }
        Ok(cluster)
    }

    /// `HOST:PORT` of every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        self.lock()
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// A store URL for `namespace` on this cluster.
    pub fn url(&self, namespace: &str) -> String {
        let scheme = if self.tls.is_some() { "etcds" } else { "etcd" };
        format!("{scheme}://{}/{namespace}", self.endpoints().join(","))
    }

    /// The TLS files, for a TLS cluster.
    pub fn tls(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// The number of members.
    pub fn size(&self) -> usize {
        self.lock().len()
    }

    /// The PID of member `i`, while it runs.
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.lock()[i].child.as_ref().map(|c| c.id())
    }

    /// SIGSTOP member `i`: it keeps its connections but answers nothing.
    pub fn stop(&self, i: usize) {
        let mut members = self.lock();
        let m = &mut members[i];
        if let Some(child) = &m.child {
            signal(child.id(), libc::SIGSTOP);
            m.stopped = true;
        }
    }

    /// SIGCONT member `i`.
    pub fn resume(&self, i: usize) {
        let mut members = self.lock();
        let m = &mut members[i];
        if let Some(child) = &m.child {
            signal(child.id(), libc::SIGCONT);
            m.stopped = false;
        }
    }

    /// SIGKILL member `i` and reap it.
    pub fn kill(&self, i: usize) {
        let mut members = self.lock();
        if let Some(mut child) = members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        members[i].stopped = false;
    }

    /// Starts member `i` again on its data directory (after [`kill`](Self::kill)).
    pub fn restart(&self, i: usize) {
        self.spawn(i).expect("restart etcd member");
    }

    /// The index of the leader, once the running members agree on one that
    /// runs (panics after [`HEALTHY_WITHIN`]).
    pub fn leader(&self) -> usize {
        self.try_wait_healthy(HEALTHY_WITHIN)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.log_tails()))
    }

    /// Waits until the running members agree on a running leader.
    pub fn wait_healthy(&self) {
        self.leader();
    }

    /// Indices of the running members that are not the leader.
    pub fn followers(&self) -> Vec<usize> {
        let leader = self.leader();
        let running = self.running();
        running.into_iter().filter(|&i| i != leader).collect()
    }

    /// Compacts the cluster's history up to the current revision; returns it.
    pub fn compact(&self) -> i64 {
        self.admin(async |mut c| {
            let rev = c.get("x", None).await.unwrap().header().unwrap().revision();
            c.compact(
                rev,
                Some(etcd_client::CompactionOptions::new().with_physical()),
            )
            .await
            .unwrap();
            rev
        })
    }

    /// Runs `f` with a plain etcd-client connected to every running member
    /// (as root on an auth cluster, with the client certificate on a TLS one).
    pub fn admin<R>(&self, f: impl AsyncFnOnce(etcd_client::Client) -> R) -> R {
        let endpoints = self.client_urls(&self.running());
        let mut options = etcd_client::ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(2))
            .with_timeout(Duration::from_secs(10));
        if let Some(tls) = &self.tls {
            options = options.with_tls(tls_options(tls));
        }
        if let Some(pw) = &self.root_password {
            options = options.with_user("root", pw.clone());
        }
        runtime().block_on(async move {
            let client = etcd_client::Client::connect(endpoints, Some(options))
                .await
                .expect("admin client");
            f(client).await
        })
    }

    fn enable_auth(&self, password: &str) {
        let password = password.to_string();
        self.admin(async move |mut c| {
            c.user_add("root", password, None).await.expect("user add");
            c.user_grant_role("root", "root").await.expect("grant root");
            c.auth_enable().await.expect("auth enable");
        });
    }

    fn running(&self) -> Vec<usize> {
        self.lock()
            .iter()
            .enumerate()
            .filter(|(_, m)| m.child.is_some() && !m.stopped)
            .map(|(i, _)| i)
            .collect()
    }

    fn client_urls(&self, which: &[usize]) -> Vec<String> {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let members = self.lock();
        which
            .iter()
            .map(|&i| format!("{scheme}://127.0.0.1:{}", members[i].client_port))
            .collect()
    }

    /// Polls every running member's status until all name the same running
    /// leader; returns its index.
    fn try_wait_healthy(&self, within: Duration) -> Result<usize, String> {
        let deadline = Instant::now() + within;
        let mut last;
        loop {
            match self.agreed_leader() {
                Ok(leader) => return Ok(leader),
                Err(e) => last = e,
            }
            if let Some(exited) = self.exited_member() {
                return Err(format!("etcd member {exited} exited"));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "cluster {} not healthy within {within:?}: {last}",
                    self.label
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn agreed_leader(&self) -> Result<usize, String> {
        let running = self.running();
        let urls = self.client_urls(&running);
        let tls = self.tls.clone();
        let statuses: Vec<Result<(u64, u64), String>> = runtime().block_on(async move {
            let mut out = Vec::new();
            for url in urls {
                out.push(member_status(url, tls.as_ref()).await);
            }
            out
        });
        let mut ids = Vec::new();
        let mut leaders = Vec::new();
        for status in statuses {
            let (id, leader) = status?;
            ids.push(id);
            leaders.push(leader);
        }
        let leader = *leaders.first().ok_or("no member runs")?;
        if leader == 0 || leaders.iter().any(|&l| l != leader) {
            return Err(format!("members disagree on the leader: {leaders:x?}"));
        }
        let at = ids
            .iter()
            .position(|&id| id == leader)
            .ok_or_else(|| format!("leader {leader:x} is not a running member"))?;
        Ok(running[at])
    }

    fn exited_member(&self) -> Option<String> {
        let mut members = self.lock();
        for m in members.iter_mut() {
            if let Some(child) = &mut m.child
                && let Ok(Some(status)) = child.try_wait()
            {
                m.child = None;
                return Some(format!("{} ({status})", m.name));
            }
        }
        None
    }

    fn spawn(&self, i: usize) -> std::io::Result<()> {
        let mut members = self.lock();
        let m = &mut members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)?;
        let mut cmd = Command::new("etcd");
        cmd.args(&m.args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        m.child = Some(spawn_with_death_signal(cmd)?);
        m.stopped = false;
        Ok(())
    }

    /// The last lines of every member's log, for failure messages.
    pub fn log_tails(&self) -> String {
        let members = self.lock();
        let mut out = String::new();
        for m in members.iter() {
            let text = std::fs::read_to_string(&m.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(8)..];
            out.push_str(&format!("--- {} log tail:\n{}\n", m.name, tail.join("\n")));
        }
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Member>> {
        self.members.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops every member (CONT, TERM, wait up to 5 s, KILL) and reaps it.
    fn shut_down(&self) {
        let mut members = self.lock();
        for m in members.iter_mut() {
            if let Some(child) = &m.child {
                signal(child.id(), libc::SIGCONT);
                signal(child.id(), libc::SIGTERM);
            }
        }
        // A member may ignore TERM for seconds once its peers are gone.
        let deadline = Instant::now() + Duration::from_secs(5);
        for m in members.iter_mut() {
            if let Some(mut child) = m.child.take() {
                while Instant::now() < deadline {
                    if let Ok(Some(_)) = child.try_wait() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                if let Ok(None) = child.try_wait() {
                    let _ = child.kill();
                }
                let _ = child.wait();
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shut_down();
        if let Some(dir) = self.dir.take() {
            let _ = dir.close();
        }
    }
}

/// Polls `f` every 10 ms until it returns `Some`, at most `within`; panics
/// naming `what` otherwise.
pub fn eventually<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("not within {within:?}: {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `etcd` runs; prints why not, and fails under CI.
fn etcd_available(label: &str) -> bool {
    let found = Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if found {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("etcd is not installed: CI must install etcd-server (see .ci/run)");
    }
    // Straight to the process's stderr: libtest's capture would hide an
    // `eprintln!` of a passing test.
    let test = std::thread::current().name().unwrap_or(label).to_string();
    let mut err = std::io::stderr();
    let _ = writeln!(
        err,
        "NOT RUN: {test}: no etcd binary on PATH (apt-get install etcd-server)"
    );
    false
}

/// Free TCP ports on 127.0.0.1 (held together while picking so they differ).
fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()).map_err(|e| e.to_string()))
        .collect()
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Spawns from one thread that lives as long as the process, with
/// `PR_SET_PDEATHSIG = SIGKILL`: the kernel then kills the member when the
/// test process dies, however it dies (the signal is tied to the spawning
/// thread, hence the long-lived thread).
fn spawn_with_death_signal(cmd: Command) -> std::io::Result<Child> {
    type Request = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("etcd-spawner".to_string())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    // SAFETY: prctl is async-signal-safe; nothing else runs
                    // between fork and exec.
                    unsafe {
                        cmd.pre_exec(|| {
                            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                            Ok(())
                        });
                    }
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawner thread");
        Mutex::new(tx)
    });
    let (reply, result) = mpsc::channel();
    sender
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, reply))
        .map_err(|_| std::io::Error::other("spawner thread gone"))?;
    result
        .recv()
        .map_err(|_| std::io::Error::other("spawner thread gone"))?
}

/// Tears the shared cluster down when the test process exits normally.
fn register_at_exit(cluster: &'static Cluster) {
    static CLUSTERS: Mutex<Vec<&'static Cluster>> = Mutex::new(Vec::new());
    extern "C" fn tear_down() {
        let clusters = std::mem::take(&mut *CLUSTERS.lock().unwrap_or_else(|e| e.into_inner()));
        for c in clusters {
            c.shut_down();
            if let Some(dir) = &c.dir {
                let _ = std::fs::remove_dir_all(dir.path());
            }
        }
    }
    let mut clusters = CLUSTERS.lock().unwrap_or_else(|e| e.into_inner());
    if clusters.is_empty() {
        // SAFETY: registering a plain extern "C" function.
        unsafe {
            libc::atexit(tear_down);
        }
    }
    clusters.push(cluster);
}

/// A small runtime for the harness's own etcd-client calls.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// (member id, leader id) of one member, bounded.
async fn member_status(url: String, tls: Option<&TlsFiles>) -> Result<(u64, u64), String> {
    let mut options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_millis(500))
        .with_timeout(Duration::from_secs(1));
    if let Some(tls) = tls {
        options = options.with_tls(tls_options(tls));
    }
    let ask = async {
        let mut c = etcd_client::Client::connect([url.clone()], Some(options))
            .await
            .map_err(|e| e.to_string())?;
        let status = c.status().await.map_err(|e| e.to_string())?;
        let id = status.header().map(|h| h.member_id()).unwrap_or(0);
        Ok((id, status.leader()))
    };
    tokio::time::timeout(Duration::from_secs(2), ask)
        .await
        .map_err(|_| format!("{url}: no status within 2 s"))?
        .map_err(|e: String| format!("{url}: {e}"))
}

fn tls_options(tls: &TlsFiles) -> etcd_client::TlsOptions {
    let read = |p: &Path| std::fs::read(p).expect("read TLS file");
    etcd_client::TlsOptions::new()
        .ca_certificate(etcd_client::Certificate::from_pem(read(&tls.ca)))
        .identity(etcd_client::Identity::from_pem(
            read(&tls.client_cert),
            read(&tls.client_key),
        ))
}

/// Writes a CA, a server certificate for 127.0.0.1/localhost and a client
/// certificate into `dir`.
fn make_certificates(dir: &Path) -> Result<TlsFiles, String> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};
    let e = |e: rcgen::Error| e.to_string();
    let ca_key = KeyPair::generate().map_err(e)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "jobwatch test CA");
    let ca = ca_params.self_signed(&ca_key).map_err(e)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().map_err(e)?;
    let mut server_params = CertificateParams::new(vec!["localhost".to_string()]).map_err(e)?;
    server_params
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
    let server = server_params.signed_by(&server_key, &issuer).map_err(e)?;

    let client_key = KeyPair::generate().map_err(e)?;
    let mut client_params = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    client_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "jobwatch test client");
    let client = client_params.signed_by(&client_key, &issuer).map_err(e)?;

    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem)
            .map(|_| path)
            .map_err(|e| e.to_string())
    };
    Ok(TlsFiles {
        ca: write("ca.pem", ca.pem())?,
        client_cert: write("client.pem", client.pem())?,
        client_key: write("client-key.pem", client_key.serialize_pem())?,
    })
    .and_then(|files| {
        write("server.pem", server.pem())?;
        write("server-key.pem", server_key.serialize_pem())?;
        Ok(files)
    })
}
