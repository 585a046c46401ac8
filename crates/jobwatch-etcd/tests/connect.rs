//! Connecting: unreachable and hanging endpoints give bounded one-line
//! errors; TLS with client certificates and auth work, and their failures
//! say what to fix.

#[path = "support/cluster.rs"]
mod cluster;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use cluster::{Cluster, Options};
use jobwatch_etcd::{
    Credentials, Error, EtcdClient, EtcdConfig, TlsFiles, WatchMessage, WatchScope,
};

/// A TCP port held bound but not listening: connections to it are refused,
/// and no other test can take it while this lives (a port merely closed
/// again could be picked by a cluster starting in parallel).
struct RefusingPort {
    _fd: std::os::fd::OwnedFd,
    port: u16,
}

impl RefusingPort {
    fn new() -> Self {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket calls on a fresh descriptor we own.
        unsafe {
            let raw = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
            assert!(raw >= 0);
            let fd = std::os::fd::OwnedFd::from_raw_fd(raw);
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            addr.sin_family = libc::AF_INET as libc::sa_family_t;
            addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
            let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let p = &mut addr as *mut libc::sockaddr_in as *mut libc::sockaddr;
            assert_eq!(libc::bind(raw, p, len), 0);
            let mut got = len;
            assert_eq!(libc::getsockname(raw, p, &mut got), 0);
            RefusingPort {
                _fd: fd,
                port: u16::from_be(addr.sin_port),
            }
        }
    }
}

fn assert_one_line_naming(err: &Error, endpoints: &[String]) {
    let text = err.to_string();
    assert!(!text.contains('\n'), "one line: {text}");
    for e in endpoints {
        assert!(text.contains(e.as_str()), "names {e}: {text}");
    }
}

#[test]
fn a_refused_endpoint_list_fails_at_once_with_one_line_naming_every_endpoint() {
    let ports: Vec<RefusingPort> = (0..3).map(|_| RefusingPort::new()).collect();
    let endpoints: Vec<String> = ports
        .iter()
        .map(|p| format!("127.0.0.1:{}", p.port))
        .collect();
    let url = format!("etcd://{}/ns", endpoints.join(","));
    let started = Instant::now();
    let err = EtcdClient::connect(EtcdConfig::parse(&url).unwrap()).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert_one_line_naming(&err, &endpoints);
    assert!(err.to_string().contains("Connection refused"), "{err}");
    drop(ports);
}

#[test]
fn an_endpoint_that_accepts_but_never_answers_fails_within_the_connect_bound() {
    // The kernel completes the TCP handshake into the backlog; nobody ever
    // reads: a hung server.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("127.0.0.1:{}", silent.local_addr().unwrap().port());
    let mut config = EtcdConfig::parse(&format!("etcd://{endpoint}")).unwrap();
    config.connect_timeout = Duration::from_millis(500);
    config.request_timeout = Duration::from_secs(1);
    let started = Instant::now();
    let err = EtcdClient::connect(config).unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "{took:?}");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert_one_line_naming(&err, std::slice::from_ref(&endpoint));
}

#[test]
fn calls_fail_within_the_operation_bound_once_the_whole_cluster_is_gone() {
    let Some(cluster) = Cluster::start("cluster-gone") else {
        return;
    };
    let mut config = EtcdConfig::parse(&cluster.url("gone")).unwrap();
    config.operation_timeout = Duration::from_secs(3);
    let client = EtcdClient::connect(config).unwrap();
    client.put(b"k", b"v", None).unwrap();
    for i in 0..cluster.size() {
        cluster.kill(i);
    }
    let started = Instant::now();
    let err = client.get(b"k").unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert_one_line_naming(&err, &cluster.endpoints());
    eprintln!("measured: a get with every member dead failed after {took:?}: {err}");
}

#[test]
fn a_tls_cluster_with_client_certificates_works_and_refuses_clients_without_one() {
    let options = Options {
        tls: true,
        ..Options::default()
    };
    let Some(cluster) = Cluster::start_with("tls", options) else {
        return;
    };
    let files = cluster.tls().unwrap().clone();
    let url = cluster.url("secure");
    assert!(url.starts_with("etcds://"));

    let env = |name: &str| match name {
        "JOBWATCH_ETCD_CA" => Some(files.ca.display().to_string()),
        "JOBWATCH_ETCD_CERT" => Some(files.client_cert.display().to_string()),
        "JOBWATCH_ETCD_KEY" => Some(files.client_key.display().to_string()),
        _ => None,
    };
    let config = EtcdConfig::parse(&url).unwrap().with_env_from(env).unwrap();
    let client = EtcdClient::connect(config).unwrap();
    let rev = client.put(b"k", b"secret", None).unwrap();
    assert_eq!(client.get(b"k").unwrap().kv.unwrap().value, b"secret");
    let watch = client.watch(b"k", WatchScope::Key, rev).unwrap();
    assert!(matches!(
        watch.recv_timeout(Duration::from_secs(10)),
        Some(WatchMessage::Events(_))
    ));

    // Without a client certificate the members refuse the handshake.
    let mut config = EtcdConfig::parse(&url).unwrap();
    config.tls_files = TlsFiles {
        ca: Some(files.ca.clone()),
        ..TlsFiles::default()
    };
    let err = EtcdClient::connect(config).unwrap_err();
    assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
    assert_one_line_naming(&err, &cluster.endpoints());
    eprintln!("without a client certificate: {err}");

    // Without our CA the members' certificates are not trusted.
    let mut config = EtcdConfig::parse(&url).unwrap();
    config.tls_files = TlsFiles {
        ca: None,
        cert: Some(files.client_cert.clone()),
        key: Some(files.client_key.clone()),
    };
    let err = EtcdClient::connect(config).unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("certificate"),
        "{err}"
    );
    eprintln!("without the CA: {err}");

    // A missing file is named.
    let mut config = EtcdConfig::parse(&url).unwrap();
    config.tls_files.ca = Some("/nonexistent/ca.pem".into());
    let err = EtcdClient::connect(config).unwrap_err();
    assert!(matches!(err, Error::TlsFile { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}

#[test]
fn an_auth_cluster_accepts_the_right_password_and_names_the_problem_otherwise() {
    let options = Options {
        root_password: Some("s3cret".to_string()),
        ..Options::default()
    };
    let Some(cluster) = Cluster::start_with("auth", options) else {
        return;
    };
    let url = cluster.url("authed");
    let with = |user: &str, password: &str| {
        let mut config = EtcdConfig::parse(&url).unwrap();
        config.credentials = Some(Credentials {
            user: user.to_string(),
            password: password.to_string(),
        });
        EtcdClient::connect(config)
    };
    let client = with("root", "s3cret").unwrap();
    client.put(b"k", b"v", None).unwrap();
    assert!(client.create(b"claim", b"me", None).unwrap().created());
    let lease = client.lease_grant(Duration::from_secs(5)).unwrap();
    let keeper = client.keep_alive(lease, Duration::from_secs(5));
    assert!(!keeper.is_expired());

    let started = Instant::now();
    let err = with("root", "wrong").unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(matches!(err, Error::AuthFailed { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("authentication failed"), "{text}");
    assert!(text.contains("\"root\""), "{text}");
    assert!(text.contains("JOBWATCH_ETCD_PASSWORD"), "{text}");
    assert!(
        !text.contains("wrong"),
        "the password is never printed: {text}"
    );
    assert!(!text.contains('\n'));
    eprintln!("wrong password: {text}");

    let err = EtcdClient::connect(EtcdConfig::parse(&url).unwrap()).unwrap_err();
    assert!(matches!(err, Error::PermissionDenied { .. }), "{err:?}");
    assert!(err.to_string().contains("JOBWATCH_ETCD_USER"), "{err}");
    eprintln!("no credentials: {err}");
}
