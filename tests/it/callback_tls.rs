//! HTTPS on the callback listener, through the real binary: a CA made here
//! (root → intermediate → leaf, the chain file as an ACME client writes
//! it), the sandbox delivering callbacks over https trusting only that root,
//! real TLS clients (TLS 1.3 and 1.2 accepted; 1.0, 1.1 and plain HTTP
//! refused), a renewal under continuous load (SIGHUP; no failed request,
//! new handshakes get the new serial), a bad pair on SIGHUP refused with the
//! old one kept, and `/readyz` and `/metrics` on a certificate near its end.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mydex_test_support::*;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SerialNumber,
};

/// A test CA: a root (trusted by the clients) and an intermediate (issuing
/// leaves, sent in the chain like Let's Encrypt's).
pub struct TestCa {
    root: CertifiedIssuer<'static, KeyPair>,
    inter: CertifiedIssuer<'static, KeyPair>,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    p
}

impl TestCa {
    pub fn new() -> Self {
        let root =
            CertifiedIssuer::self_signed(ca_params("test root"), KeyPair::generate().unwrap())
                .unwrap();
        let inter = CertifiedIssuer::signed_by(
            ca_params("test intermediate"),
            KeyPair::generate().unwrap(),
            &root,
        )
        .unwrap();
        TestCa { root, inter }
    }

    /// The root, PEM: what clients trust.
    pub fn root_pem(&self) -> String {
        self.root.pem()
    }

    /// A leaf for 127.0.0.1 and localhost with `serial`, valid from an
    /// hour ago for `valid_for`: (chain PEM = leaf + intermediate, key PEM).
    pub fn leaf(&self, serial: u8, valid_for: Duration) -> (String, String) {
        let mut p = CertificateParams::new(vec!["127.0.0.1".into(), "localhost".into()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, "localhost");
        p.serial_number = Some(SerialNumber::from(vec![0x10, serial]));
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now - Duration::from_secs(3600);
        p.not_after = now + valid_for;
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.inter).unwrap();
        (
            format!("{}{}", cert.pem(), self.inter.pem()),
            key.serialize_pem(),
        )
    }
}

/// The serial `TestCa::leaf(serial, _)` gives, as the daemon logs it.
pub fn serial_text(serial: u8) -> String {
    format!("10:{serial:02x}")
}

pub const DAY: Duration = Duration::from_secs(86_400);

/// Write `content` to `path` the way certbot renews: a new file renamed
/// over the old, so a reader sees the old or the new, never half.
pub fn put(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The pair files under `dir/tls/`, written from `leaf`.
pub fn write_pair(dir: &Path, leaf: &(String, String)) -> (PathBuf, PathBuf) {
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls).unwrap();
    let (cert, key) = (tls.join("fullchain.pem"), tls.join("privkey.pem"));
    put(&cert, &leaf.0);
    put(&key, &leaf.1);
    (cert, key)
}

/// `[callback]` with the pair's keys.
pub const TLS_KEYS: &str =
    "[callback]\ntls_cert_file = \"tls/fullchain.pem\"\ntls_key_file = \"tls/privkey.pem\"\n";

struct Tls {
    smtp: Smtp,
    setup: Setup,
    ca: TestCa,
    daemon: Proc,
}

/// Sandbox trusting only the test CA, delivering to https://; the daemon
/// serving the leaf `serial`, valid for `valid_for`.
async fn start(serial: u8, valid_for: Duration) -> Tls {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.root_pem()).unwrap();
    write_pair(dir.path(), &ca.leaf(serial, valid_for));
    let smtp = smtp(dir.path(), &[]);
    let setup = setup(
        smtp.port,
        dir,
        Options {
            sandbox_ca_file: Some(ca_file),
            ..Default::default()
        },
    )
    .await;
    setup.edit_config("[callback]\n", TLS_KEYS);
    setup
        .sandbox_settings(serde_json::json!({"callback_url": https_url(&setup)}))
        .await;
    let daemon = setup.daemon();
    Tls {
        smtp,
        setup,
        ca,
        daemon,
    }
}

fn https_url(setup: &Setup) -> String {
    format!("https://127.0.0.1:{}/mydex/callback", setup.callback_port)
}

/// A client trusting only the test root, TLS versions `min..=max`; `fresh`:
/// a new connection (a new handshake) for every request.
fn client(
    ca: &TestCa,
    min: reqwest::tls::Version,
    max: reqwest::tls::Version,
    fresh: bool,
) -> reqwest::Client {
    client_for(&ca.root_pem(), min, max, fresh)
}

fn client_for(
    root_pem: &str,
    min: reqwest::tls::Version,
    max: reqwest::tls::Version,
    fresh: bool,
) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .tls_certs_only(reqwest::Certificate::from_pem_bundle(root_pem.as_bytes()).unwrap())
        .tls_version_min(min)
        .tls_version_max(max)
        .tls_info(true)
        .timeout(Duration::from_secs(30));
    if fresh {
        b = b.pool_max_idle_per_host(0);
    }
    b.build().unwrap()
}

/// GET the callback path (401: no `Authentication`, refused before
/// anything is read or kept) and the serial of the certificate the server
/// presented.
async fn probe(client: &reqwest::Client, url: &str) -> Result<String, String> {
    let resp = client.get(url).send().await.map_err(|e| format!("{e:?}"))?;
    if resp.status() != 401 {
        return Err(format!("status {}", resp.status()));
    }
    let info = resp
        .extensions()
        .get::<reqwest::tls::TlsInfo>()
        .ok_or("no TLS info")?;
    let der = info.peer_certificate().ok_or("no peer certificate")?;
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    Ok(cert.raw_serial_as_string().to_lowercase())
}

/// A ClientHello offering only TLS `minor` (1 = 1.0, 2 = 1.1) with the
/// suites those versions used; the first bytes the server answers.
fn legacy_hello(port: u16, minor: u8) -> Vec<u8> {
    let mut body = vec![0x03, minor];
    body.extend([7u8; 32]); // random
    body.push(0); // no session id
    let suites: [u8; 8] = [0xc0, 0x13, 0xc0, 0x14, 0x00, 0x2f, 0x00, 0x35];
    body.extend([0, suites.len() as u8]);
    body.extend(suites);
    body.extend([1, 0]); // null compression
    // supported_groups (x25519, secp256r1), ec_point_formats (uncompressed)
    let ext: [u8; 16] = [
        0x00, 0x0a, 0x00, 0x06, 0x00, 0x04, 0x00, 0x1d, 0x00, 0x17, 0x00, 0x0b, 0x00, 0x02, 0x01,
        0x00,
    ];
    body.extend((ext.len() as u16).to_be_bytes());
    body.extend(ext);
    let mut hs = vec![1, 0];
    hs.extend((body.len() as u16).to_be_bytes());
    hs.extend(body);
    let mut record = vec![0x16, 0x03, minor];
    record.extend((hs.len() as u16).to_be_bytes());
    record.extend(hs);
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(&record).unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    answer
}

/// Enqueue `n` invitees and wait for their mails.
fn invite(t: &Tls, n: usize) -> Vec<Mail> {
    let file = t.setup.dir.path().join(format!("people-{n}.csv"));
    let mut csv = String::from("email,external_ref\n");
    for i in 0..n {
        csv += &format!("tls{i}@example.com,TLS-{n}-{i}\n");
    }
    std::fs::write(&file, csv).unwrap();
    let out = t.setup.cli(&["enqueue", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let mails = t.smtp.wait_for(n, Duration::from_secs(180));
    assert_eq!(mails.len(), n, "{}", t.setup.log());
    mails.iter().map(|m| read_mail(m)).collect()
}

/// Each mail's journey in the sandbox; every callback answered 200 over https.
async fn connect_all(t: &Tls, mails: &[Mail], tag: &str) {
    for (i, m) in mails.iter().enumerate() {
        let (status, body) = t
            .setup
            .journey(&m.qr_link, &format!("{tag}member{i}"), &m.to)
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["callback_status"], 200, "callback over https: {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_callbacks_tls12_and_13_only_and_no_plain_http() {
    let t = start(1, 90 * DAY).await;
    let url = https_url(&t.setup);
    use reqwest::tls::Version;

    // The sandbox delivers Mydex's callbacks over https, trusting the root.
    let mails = invite(&t, 3);
    connect_all(&t, &mails, "tls").await;
    let status = t.setup.wait_status(
        |s| s["invitations"]["connected"] == 3,
        Duration::from_secs(60),
    );
    assert_eq!(status["invitations"]["connected"], 3, "{status}");

    // TLS 1.3, and TLS 1.2, both with the chain to the root.
    for (name, v) in [("1.3", Version::TLS_1_3), ("1.2", Version::TLS_1_2)] {
        let serial = probe(&client(&t.ca, v, v, true), &url).await;
        assert_eq!(serial, Ok(serial_text(1)), "TLS {name}");
        println!("TLS {name}: handshake ok, serial {}", serial_text(1));
    }
    // TLS 1.0 and 1.1: a protocol_version alert (21 = alert, 70 =
    // protocol_version), never a ServerHello.
    for minor in [1u8, 2] {
        let answer = legacy_hello(t.setup.callback_port, minor);
        println!("TLS 1.{}: server answered {answer:02x?}", minor - 1);
        assert!(
            answer.first() != Some(&0x16),
            "no handshake for TLS 1.{}",
            minor - 1
        );
        // An alert record: fatal, handshake_failure (40) or
        // protocol_version (70).
        assert_eq!(answer.first(), Some(&0x15), "an alert: {answer:02x?}");
        assert_eq!(answer.get(5), Some(&2), "fatal: {answer:02x?}");
        assert!(
            matches!(answer.get(6), Some(40 | 70)),
            "refused: {answer:02x?}"
        );
    }
    // Plain HTTP on the TLS port: no HTTP answer.
    let plain = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{}/mydex/callback",
            t.setup.callback_port
        ))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP must not be answered: {plain:?}");
    // A client that does not trust our root refuses the certificate.
    let other = TestCa::new();
    let refused = probe(
        &client(&other, Version::TLS_1_2, Version::TLS_1_3, true),
        &url,
    )
    .await;
    assert!(refused.is_err(), "{refused:?}");
    // Still serving.
    let again = probe(
        &client(&t.ca, Version::TLS_1_2, Version::TLS_1_3, true),
        &url,
    )
    .await;
    assert_eq!(again, Ok(serial_text(1)));
    assert!(t.setup.log().contains("callback listener serves HTTPS"));
    t.setup.keep_for_log_scan().await;
    t.setup.stop(t.daemon);
}

/// One client loop: requests until `stop`; each answer's serial or error.
/// `full`: a new client each time, so each request is a full handshake (a
/// kept client would resume its TLS session, which keeps the certificate
/// of the handshake it resumes).
fn load_loop(
    make: impl Fn() -> reqwest::Client + Send + 'static,
    full: bool,
    url: String,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Vec<Result<String, String>>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        let kept = make();
        while !stop.load(Ordering::Relaxed) {
            let c = if full { make() } else { kept.clone() };
            seen.push(probe(&c, &url).await);
            done.fetch_add(1, Ordering::Relaxed);
        }
        seen
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renewal_under_load_on_sighup_then_a_bad_pair_is_refused() {
    let t = start(1, 90 * DAY).await;
    let url = https_url(&t.setup);
    let pid = t.daemon.0.id() as i32;
    use reqwest::tls::Version;
    let mails = invite(&t, 6);

    // Two loops: new handshakes each time (one TLS 1.3, one TLS 1.2), and a
    // kept-alive connection.
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let root = Arc::new(t.ca.root_pem());
    let with = |min, max, fresh| {
        let root = root.clone();
        move || client_for(&root, min, max, fresh)
    };
    let loops = [
        load_loop(
            with(Version::TLS_1_3, Version::TLS_1_3, true),
            true,
            url.clone(),
            stop.clone(),
            done.clone(),
        ),
        load_loop(
            with(Version::TLS_1_2, Version::TLS_1_2, true),
            true,
            url.clone(),
            stop.clone(),
            done.clone(),
        ),
        load_loop(
            with(Version::TLS_1_2, Version::TLS_1_3, false),
            false,
            url.clone(),
            stop.clone(),
            done.clone(),
        ),
    ];
    let watch = with(Version::TLS_1_2, Version::TLS_1_3, true);
    // Callbacks before the renewal.
    connect_all(&t, &mails[..3], "before").await;

    // The renewal: new files renamed in, then SIGHUP (certbot's deploy hook).
    let renewed = t.ca.leaf(2, 90 * DAY);
    write_pair(t.setup.dir.path(), &renewed);
    assert_eq!(send_signal(pid, "HUP"), 0);
    let start = Instant::now();
    while probe(&watch(), &url).await != Ok(serial_text(2)) {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "the new certificate was not served: {}",
            t.setup.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Callbacks after it, while the loops go on.
    connect_all(&t, &mails[3..], "after").await;
    let log = t.setup.log();
    let line = log
        .lines()
        .find(|l| l.contains("callback certificate reloaded"))
        .unwrap_or_else(|| panic!("reload logged: {log}"));
    println!("{line}");
    assert!(
        line.contains(&serial_text(1)) && line.contains(&serial_text(2)),
        "{line}"
    );

    // A bad pair: the key of another certificate. Refused, the old kept.
    let other = t.ca.leaf(3, 90 * DAY);
    put(&t.setup.dir.path().join("tls/privkey.pem"), &other.1);
    assert_eq!(send_signal(pid, "HUP"), 0);
    let start = Instant::now();
    while !t.setup.log().contains("reload refused") {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{}",
            t.setup.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let log = t.setup.log();
    let refused = log.lines().find(|l| l.contains("reload refused")).unwrap();
    println!("{refused}");
    assert!(
        refused.contains("callback.tls_key_file") && refused.contains("does not match"),
        "{refused}"
    );
    // More requests after the refusal, on the pair kept.
    let after = done.load(Ordering::Relaxed);
    let start = Instant::now();
    while done.load(Ordering::Relaxed) < after + 30 {
        assert!(start.elapsed() < Duration::from_secs(120), "loops stalled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        probe(&watch(), &url).await,
        Ok(serial_text(2)),
        "old pair kept"
    );
    // (The good key back, for the CLI's `status`, which reads the file.)
    write_pair(t.setup.dir.path(), &renewed);

    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for (i, l) in loops.into_iter().enumerate() {
        let seen = l.await.unwrap();
        let failed: Vec<_> = seen.iter().filter(|r| r.is_err()).collect();
        assert!(failed.is_empty(), "loop {i}: failed requests {failed:?}");
        let first_new = seen.iter().position(|r| r == &Ok(serial_text(2)));
        println!(
            "loop {i}: {} requests, 0 failed, serial 10:02 from request {first_new:?}",
            seen.len()
        );
        total += seen.len();
        if i < 2 {
            // New handshakes: the old serial before, the new one after.
            let first_new = first_new.expect("new handshakes see the new certificate");
            assert!(first_new > 0, "loop {i} started before the renewal");
            assert!(
                seen[first_new..].iter().all(|r| r == &Ok(serial_text(2))),
                "loop {i}: after the first new handshake, only the new certificate"
            );
        }
    }
    println!("{total} requests during the renewal, none failed");
    let status = t.setup.wait_status(
        |s| s["invitations"]["connected"] == 6,
        Duration::from_secs(60),
    );
    assert_eq!(status["invitations"]["connected"], 6, "{status}");
    t.setup.keep_for_log_scan().await;
    t.setup.stop(t.daemon);
}

async fn readyz(setup: &Setup) -> serde_json::Value {
    reqwest::get(setup.admin_url("/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_near_its_end_is_a_readyz_warning_and_a_metric() {
    let t = start(1, 5 * DAY).await;
    let pid = t.daemon.0.id() as i32;
    let r = readyz(&t.setup).await;
    println!("{r}");
    let check = &r["checks"]["callback_tls"];
    assert_eq!(check["ok"], true, "{r}");
    assert!(check["days_left"] == 4 || check["days_left"] == 5, "{r}");
    let warnings = r["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{r}");
    assert!(warnings[0].as_str().unwrap().contains("expires in"), "{r}");
    let metrics = t.setup.metrics().await;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("mydex_connector_callback_tls_cert_expiry_seconds "))
        .unwrap_or_else(|| panic!("{metrics}"));
    let at: i64 = line.split(' ').nth(1).unwrap().parse().unwrap();
    let left = at - chrono_now();
    assert!((4 * 86_400..=5 * 86_400).contains(&left), "{line}");

    // Renewed: the warning goes.
    write_pair(t.setup.dir.path(), &t.ca.leaf(2, 90 * DAY));
    assert_eq!(send_signal(pid, "HUP"), 0);
    let start = Instant::now();
    loop {
        let r = readyz(&t.setup).await;
        if r["checks"]["callback_tls"]["serial"] == serial_text(2) {
            assert_eq!(r["warnings"], serde_json::json!([]), "{r}");
            assert!(r["checks"]["callback_tls"]["days_left"].as_i64() >= Some(89));
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(120), "{r}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    t.setup.stop(t.daemon);
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}
