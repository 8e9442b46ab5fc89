//! A throwaway PostgreSQL cluster for the tests: `initdb` in a temporary directory, the server
//! on a free loopback port, one database per test.
//!
//! One cluster serves the whole test binary. It is started by a small `sh` supervisor whose
//! stdin is a pipe held by this process: when the test process ends, however it ends (tests
//! passing or failing, a panic, a kill), the pipe closes, and the supervisor stops the server
//! (fast shutdown) and removes the directory. initdb and postgres refuse to run as root, so
//! under root (CI) they run as the `postgres` user (created by Debian's `postgresql`
//! package) through `setpriv`, and the directory is handed to that user.
//!
//! The binaries are found under `$ETRADING_PG_BIN_DIR`, else the newest
//! `/usr/lib/postgresql/*/bin`. Missing binaries fail the tests; they never skip.
//!
//! A second cluster, [`tls_cluster`], runs with `ssl=on` and a server certificate for
//! `localhost` signed by a CA made here with rcgen; its PEM file (and another CA's, which
//! signed nothing of this server) lie in the cluster's directory.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The superuser the tests connect as (password authentication on loopback).
pub const ADMIN: &str = "etrading";

/// The running cluster.
#[derive(Debug)]
pub struct Cluster {
    /// Its temporary directory (removed when the test process ends).
    pub dir: PathBuf,
    /// Loopback port.
    pub port: u16,
    /// The superuser's password.
    pub password: String,
    /// Held open for the life of the process: its end tells the supervisor to stop.
    _stop_pipe: Mutex<ChildStdin>,
    _supervisor: Mutex<Child>,
}

impl Cluster {
    /// A connection URL for `database` as `role` with `password`.
    pub fn url_as(&self, role: &str, password: &str, database: &str) -> String {
        format!(
            "postgresql://{role}:{password}@127.0.0.1:{}/{database}",
            self.port
        )
    }

    /// The superuser's URL for `database`.
    pub fn url(&self, database: &str) -> String {
        self.url_as(ADMIN, &self.password, database)
    }
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The cluster, started on first use.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| start(None))
}

/// A cluster that speaks TLS, and the certificates to check it with.
#[derive(Debug)]
pub struct TlsCluster {
    /// The cluster (`ssl=on`; plain connections are accepted too).
    pub cluster: Cluster,
    /// PEM file of the CA that signed the server's certificate (for `localhost` only).
    pub ca: PathBuf,
    /// PEM file of another CA, which signed nothing of this server.
    pub other_ca: PathBuf,
}

/// A server certificate and its key, PEM.
struct ServerTls {
    cert_pem: String,
    key_pem: String,
}

static TLS_CLUSTER: OnceLock<TlsCluster> = OnceLock::new();

/// The TLS cluster, started on first use.
pub fn tls_cluster() -> &'static TlsCluster {
    TLS_CLUSTER.get_or_init(|| {
        let ca = |name: &str| {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, name);
            params.key_usages = vec![
                rcgen::KeyUsagePurpose::KeyCertSign,
                rcgen::KeyUsagePurpose::DigitalSignature,
            ];
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = params.self_signed(&key).unwrap();
            (cert, rcgen::Issuer::new(params, key))
        };
        let (ca_cert, issuer) = ca("etrading test CA");
        let (other_cert, _) = ca("etrading other CA");
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "localhost");
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().unwrap();
        let server = params.signed_by(&key, &issuer).unwrap();
        let cluster = start(Some(&ServerTls {
            cert_pem: server.pem(),
            key_pem: key.serialize_pem(),
        }));
        let (ca, other_ca) = (cluster.dir.join("ca.pem"), cluster.dir.join("other-ca.pem"));
        std::fs::write(&ca, ca_cert.pem()).unwrap();
        std::fs::write(&other_ca, other_cert.pem()).unwrap();
        TlsCluster {
            cluster,
            ca,
            other_ca,
        }
    })
}

fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ETRADING_PG_BIN_DIR") {
        let dir = PathBuf::from(dir);
        assert!(
            dir.join("initdb").is_file() && dir.join("postgres").is_file(),
            "ETRADING_PG_BIN_DIR={} holds no initdb and postgres",
            dir.display()
        );
        return dir;
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            (bin.join("initdb").is_file() && bin.join("postgres").is_file()).then_some((major, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin (set \
             ETRADING_PG_BIN_DIR, or install Debian's `postgresql` package: scripts/test.sh \
             does); the PostgreSQL tests cannot run without a real server"
        ),
    }
}

/// `(uid, gid)` of `user`, from `id`.
fn ids_of(user: &str) -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, user]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    Some((id("-u")?, id("-g")?))
}

fn current_uid() -> u32 {
    let out = Command::new("id")
        .arg("-u")
        .output()
        .expect("running `id -u`");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("`id -u` prints a number")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding a loopback port")
}

fn start(tls: Option<&ServerTls>) -> Cluster {
    let bin = bin_dir();
    let dir = tempfile::Builder::new()
        .prefix("etrading-pg-")
        .tempdir()
        .expect("creating the cluster's temporary directory")
        .keep();
    // Under root, the server runs as `postgres` through setpriv, owning the directory.
    let run_as: Vec<String> = if current_uid() == 0 {
        let (uid, gid) = ids_of("postgres").unwrap_or_else(|| {
            panic!(
                "running as root, and there is no `postgres` user to run PostgreSQL as \
                 (Debian's `postgresql` package creates it)"
            )
        });
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown of the cluster dir");
        vec![
            "setpriv".into(),
            format!("--reuid={uid}"),
            format!("--regid={gid}"),
            "--clear-groups".into(),
            "--".into(),
        ]
    } else {
        Vec::new()
    };
    let owner = std::fs::metadata(&dir).map(|m| std::os::unix::fs::MetadataExt::uid(&m));
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();

    let password = format!("pw-{}-{}", std::process::id(), free_port());
    let pwfile = dir.join("pwfile");
    std::fs::write(&pwfile, format!("{password}\n")).unwrap();
    if let Ok(uid) = owner {
        std::os::unix::fs::chown(&pwfile, Some(uid), None).unwrap();
    }
    let data = dir.join("data");
    let command = |program: &Path| -> Command {
        let mut c = match run_as.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(program);
                c
            }
            None => Command::new(program),
        };
        c.current_dir(&dir);
        c
    };
    let out = command(&bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args(["-U", ADMIN, "-A", "scram-sha-256", "--no-sync"])
        .args(["-E", "UTF8", "--locale=C"])
        .arg(format!("--pwfile={}", pwfile.display()))
        .output()
        .expect("running initdb");
    assert!(
        out.status.success(),
        "initdb failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The test role signs in with its password; any other role is trusted on loopback, so that
    // an unknown role is reported as such (password auth would hide whether a role exists).
    std::fs::write(
        data.join("pg_hba.conf"),
        format!("host all {ADMIN} 127.0.0.1/32 scram-sha-256\nhost all all 127.0.0.1/32 trust\n"),
    )
    .unwrap();

    if let Some(tls) = tls {
        // The key must belong to the server's user and be readable by it alone.
        for (name, pem) in [("server.crt", &tls.cert_pem), ("server.key", &tls.key_pem)] {
            let path = data.join(name);
            std::fs::write(&path, pem).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            if let Ok(uid) = owner {
                std::os::unix::fs::chown(&path, Some(uid), None).unwrap();
            }
        }
    }

    let port = free_port();
    let mut postgres = command(&bin.join("postgres"));
    postgres
        .arg("-D")
        .arg(&data)
        .args(["-p", &port.to_string()])
        .args(["-c", "listen_addresses=127.0.0.1"])
        .args(["-c", "unix_socket_directories="])
        .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
        .args(["-c", "full_page_writes=off", "-c", "max_connections=200"]);
    if tls.is_some() {
        postgres.args(["-c", "ssl=on", "-c", "ssl_cert_file=server.crt"]);
        postgres.args(["-c", "ssl_key_file=server.key"]);
    }
    let argv: Vec<String> = std::iter::once(postgres.get_program())
        .chain(postgres.get_args())
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    // The supervisor: starts the server, waits for its stdin to close (this process ending),
    // then stops the server and removes the directory.
    let script = r#"
        "$@" >"$CLUSTER_DIR/server.log" 2>&1 &
        pid=$!
        trap '' INT TERM
        read -r _ || true
        kill -INT "$pid" 2>/dev/null
        wait "$pid"
        rm -rf "$CLUSTER_DIR"
    "#;
    let mut supervisor = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .args(&argv)
        .env("CLUSTER_DIR", &dir)
        .current_dir(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the PostgreSQL supervisor");
    let stop_pipe = supervisor.stdin.take().expect("supervisor stdin");

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = Command::new(bin.join("pg_isready"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-q"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ready {
            break;
        }
        let log = || {
            let mut text = String::new();
            if let Ok(mut f) = std::fs::File::open(dir.join("server.log")) {
                let _ = f.read_to_string(&mut text);
            }
            text
        };
        if let Ok(Some(status)) = supervisor.try_wait() {
            panic!(
                "PostgreSQL exited ({status}) before accepting connections:\n{}",
                log()
            );
        }
        if Instant::now() > deadline {
            panic!(
                "PostgreSQL did not accept connections within 60 s:\n{}",
                log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Cluster {
        dir,
        port,
        password,
        _stop_pipe: Mutex::new(stop_pipe),
        _supervisor: Mutex::new(supervisor),
    }
}
