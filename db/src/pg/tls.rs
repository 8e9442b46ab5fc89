//! TLS for PostgreSQL connections: libpq's `sslmode` and `sslrootcert`, over rustls (ring).
//!
//! tokio-postgres knows only `sslmode=disable|prefer|require` and no root certificate, so
//! [`split_tls_params`] takes `sslmode` and `sslrootcert` out of the connection string (either
//! form) before the driver parses the rest, and [`TlsSettings`] decides what the server's
//! certificate must prove:
//!
//! | `sslmode`                 | TLS                          | the server's certificate                              |
//! |---------------------------|------------------------------|-------------------------------------------------------|
//! | `disable`                 | never                        | -                                                     |
//! | `allow`, `prefer` (default) | when the server offers it  | chain checked when `sslrootcert` is given, else not   |
//! | `require`                 | always                       | as `prefer`                                           |
//! | `verify-ca`               | always                       | chain checked against `sslrootcert` (required)        |
//! | `verify-full`             | always                       | chain and host name checked (`sslrootcert` required)  |
//!
//! As in libpq, `require` with a root certificate checks the chain (as `verify-ca`), and
//! without one it encrypts but does not authenticate the server; only `verify-full` proves the
//! server is the host named. `allow` is taken as `prefer` (the driver cannot try without TLS
//! first). The handshake's signatures are always verified. There is no default root
//! certificate file (libpq reads `~/.postgresql/root.crt`): it is named or absent.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode as DriverSslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// As [`SslMode::Prefer`].
    Allow,
    /// TLS when the server offers it.
    Prefer,
    /// TLS always.
    Require,
    /// TLS always, the chain checked against the root certificate.
    VerifyCa,
    /// TLS always, the chain and the host name checked.
    VerifyFull,
}

impl SslMode {
    /// Every mode, in libpq's order.
    pub const ALL: [SslMode; 6] = [
        SslMode::Disable,
        SslMode::Allow,
        SslMode::Prefer,
        SslMode::Require,
        SslMode::VerifyCa,
        SslMode::VerifyFull,
    ];

    /// The mode named `name` (libpq's spelling).
    pub fn from_name(name: &str) -> Option<SslMode> {
        SslMode::ALL.into_iter().find(|m| m.name() == name)
    }

    /// libpq's spelling.
    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// What the driver is told: whether TLS is off, optional or required.
    pub(crate) fn driver(self) -> DriverSslMode {
        match self {
            SslMode::Disable => DriverSslMode::Disable,
            SslMode::Allow | SslMode::Prefer => DriverSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => DriverSslMode::Require,
        }
    }
}

/// TLS settings given outside the connection string (the CLI reads libpq's `PGSSLMODE` and
/// `PGSSLROOTCERT`); the string's own `sslmode` and `sslrootcert` win over them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsDefaults {
    /// `sslmode`, as libpq spells it.
    pub sslmode: Option<String>,
    /// `sslrootcert`: a PEM file of the certificates to trust.
    pub sslrootcert: Option<PathBuf>,
}

/// How a connection uses TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// The mode.
    pub mode: SslMode,
    /// The PEM file of trusted certificates, if any.
    pub root_cert: Option<PathBuf>,
}

impl TlsSettings {
    /// Settles the mode and root certificate from the string's values, else the defaults.
    pub(crate) fn resolve(
        sslmode: Option<&str>,
        sslrootcert: Option<&str>,
        defaults: &TlsDefaults,
    ) -> Result<TlsSettings, String> {
        let name = sslmode.or(defaults.sslmode.as_deref()).unwrap_or("prefer");
        let mode = SslMode::from_name(name).ok_or_else(|| {
            let names: Vec<&str> = SslMode::ALL.iter().map(|m| m.name()).collect();
            format!("sslmode {name:?} is not one of {}", names.join(", "))
        })?;
        let root_cert = match sslrootcert {
            Some(path) => Some(PathBuf::from(path)),
            None => defaults.sslrootcert.clone(),
        }
        .filter(|p| !p.as_os_str().is_empty());
        if root_cert.as_deref() == Some(Path::new("system")) {
            return Err(
                "sslrootcert=system is not supported: name the PEM file of the CA certificate"
                    .into(),
            );
        }
        if matches!(mode, SslMode::VerifyCa | SslMode::VerifyFull) && root_cert.is_none() {
            return Err(format!(
                "sslmode={} needs a root certificate: add sslrootcert=PATH (a PEM file) to the \
                 connection string or set PGSSLROOTCERT",
                mode.name()
            ));
        }
        Ok(TlsSettings { mode, root_cert })
    }

    /// The rustls connector for these settings (reads the root certificate file).
    pub(crate) fn connector(&self) -> Result<MakeRustlsConnect, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = match &self.root_cert {
            Some(path) => Some(Arc::new(load_roots(path)?)),
            None => None,
        };
        let verifier = Arc::new(Verifier {
            roots,
            check_name: self.mode == SslMode::VerifyFull,
            provider: provider.clone(),
        });
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("setting up TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }
}

/// The certificates of the PEM file at `path`.
fn load_roots(path: &Path) -> Result<RootCertStore, String> {
    let shown = path.display();
    let pem = std::fs::read(path).map_err(|e| format!("cannot read sslrootcert {shown}: {e}"))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("sslrootcert {shown}: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("sslrootcert {shown}: {e}"))?;
    }
    if roots.is_empty() {
        return Err(format!("sslrootcert {shown} holds no PEM certificate"));
    }
    Ok(roots)
}

/// Checks the server's certificate as the mode asks: nothing without roots, the chain with
/// them, and the host name too for `verify-full`. Handshake signatures are always checked.
#[derive(Debug)]
struct Verifier {
    roots: Option<Arc<RootCertStore>>,
    check_name: bool,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(roots) = &self.roots else {
            // sslmode=prefer/require without a root certificate: encryption only, as libpq.
            return Ok(ServerCertVerified::assertion());
        };
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        if self.check_name {
            verify_server_name(&cert, server_name)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A connection string without its `sslmode` and `sslrootcert`, and their values.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SplitParams {
    /// The string without them, for the driver.
    pub rest: String,
    /// `sslmode`, the last one given.
    pub sslmode: Option<String>,
    /// `sslrootcert`, the last one given.
    pub sslrootcert: Option<String>,
}

/// The parameters this module reads instead of the driver.
const TLS_KEYS: [&str; 2] = ["sslmode", "sslrootcert"];

/// Splits `sslmode` and `sslrootcert` off a `postgres[ql]://` URL (query parameters,
/// percent-encoded) or a `key=value` string (values bare or in single quotes, with backslash
/// escapes), following the driver's own parsing. A string the split cannot read is handed to
/// the driver as is, which reports what is wrong with it.
pub(crate) fn split_tls_params(s: &str) -> SplitParams {
    let split = if s.starts_with("postgres://") || s.starts_with("postgresql://") {
        split_url(s)
    } else {
        split_key_values(s)
    };
    split.unwrap_or_else(|| SplitParams {
        rest: s.to_string(),
        sslmode: None,
        sslrootcert: None,
    })
}

fn take(params: &mut SplitParams, key: &str, value: String) {
    if key == "sslmode" {
        params.sslmode = Some(value);
    } else {
        params.sslrootcert = Some(value);
    }
}

/// As the driver: the credentials end at the first `@`, the query starts at the next `?`,
/// parameters are split at `&` and at their first `=`.
fn split_url(s: &str) -> Option<SplitParams> {
    let after_credentials = s.find('@').map_or(0, |at| at + 1);
    let Some(q) = s[after_credentials..]
        .find('?')
        .map(|q| after_credentials + q)
    else {
        return Some(SplitParams {
            rest: s.to_string(),
            sslmode: None,
            sslrootcert: None,
        });
    };
    let mut params = SplitParams {
        rest: String::new(),
        sslmode: None,
        sslrootcert: None,
    };
    let mut kept = Vec::new();
    for pair in s[q + 1..].split('&') {
        if pair.is_empty() {
            continue;
        }
        let (key, value) = pair.split_once('=')?;
        let key = percent_encoding::percent_decode_str(key)
            .decode_utf8()
            .ok()?;
        if TLS_KEYS.contains(&key.as_ref()) {
            let value = percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .ok()?;
            take(&mut params, &key, value.into_owned());
        } else {
            kept.push(pair);
        }
    }
    params.rest = if kept.is_empty() {
        s[..q].to_string()
    } else {
        format!("{}?{}", &s[..q], kept.join("&"))
    };
    Some(params)
}

/// As the driver: `key = value` pairs separated by whitespace.
fn split_key_values(s: &str) -> Option<SplitParams> {
    let mut params = SplitParams {
        rest: String::new(),
        sslmode: None,
        sslrootcert: None,
    };
    let mut kept = Vec::new();
    let mut chars = s.char_indices().peekable();
    let skip_ws = |chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>| {
        while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
    };
    loop {
        skip_ws(&mut chars);
        let Some(&(start, _)) = chars.peek() else {
            break;
        };
        while chars
            .next_if(|(_, c)| !c.is_whitespace() && *c != '=')
            .is_some()
        {}
        let key_end = chars.peek().map_or(s.len(), |&(i, _)| i);
        let key = &s[start..key_end];
        skip_ws(&mut chars);
        if key.is_empty() || chars.next_if(|(_, c)| *c == '=').is_none() {
            return None;
        }
        skip_ws(&mut chars);
        let mut value = String::new();
        if chars.next_if(|(_, c)| *c == '\'').is_some() {
            loop {
                match chars.next()? {
                    (_, '\'') => break,
                    (_, '\\') => value.push(chars.next()?.1),
                    (_, c) => value.push(c),
                }
            }
        } else {
            while let Some((_, c)) = chars.next_if(|(_, c)| !c.is_whitespace()) {
                if c == '\\' {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(escaped);
                    }
                } else {
                    value.push(c);
                }
            }
            if value.is_empty() {
                return None;
            }
        }
        let end = chars.peek().map_or(s.len(), |&(i, _)| i);
        if TLS_KEYS.contains(&key) {
            take(&mut params, key, value);
        } else {
            kept.push(&s[start..end]);
        }
    }
    params.rest = kept.join(" ");
    Some(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(s: &str, rest: &str, sslmode: Option<&str>, sslrootcert: Option<&str>) {
        assert_eq!(
            split_tls_params(s),
            SplitParams {
                rest: rest.into(),
                sslmode: sslmode.map(Into::into),
                sslrootcert: sslrootcert.map(Into::into),
            },
            "{s}"
        );
    }

    #[test]
    fn tls_parameters_are_split_off_both_forms() {
        check("postgresql://u:p@h/db", "postgresql://u:p@h/db", None, None);
        check(
            "postgresql://u:p?w@h:5/db?sslmode=verify-full&application_name=x&sslrootcert=%2Ftmp%2Fca%20a.pem",
            "postgresql://u:p?w@h:5/db?application_name=x",
            Some("verify-full"),
            Some("/tmp/ca a.pem"),
        );
        check(
            "postgres://h?sslmode=require",
            "postgres://h",
            Some("require"),
            None,
        );
        check(
            "host=h sslmode = verify-ca  password='a b\\'c' sslrootcert='/x y/ca.pem' port=5",
            "host=h password='a b\\'c' port=5",
            Some("verify-ca"),
            Some("/x y/ca.pem"),
        );
        check(
            "host=h sslrootcert=/a\\ b sslmode=disable sslmode=require",
            "host=h",
            Some("require"),
            Some("/a b"),
        );
        // Unreadable strings go to the driver unchanged.
        check("host=h password='open", "host=h password='open", None, None);
        check("=x", "=x", None, None);
    }

    #[test]
    fn modes_and_root_certificates() {
        let d = TlsDefaults::default();
        let resolve =
            |m: Option<&str>, r: Option<&str>, d: &TlsDefaults| TlsSettings::resolve(m, r, d);
        assert_eq!(
            resolve(None, None, &d).unwrap(),
            TlsSettings {
                mode: SslMode::Prefer,
                root_cert: None
            }
        );
        for mode in SslMode::ALL {
            assert_eq!(SslMode::from_name(mode.name()), Some(mode));
        }
        let e = resolve(Some("sometimes"), None, &d).unwrap_err();
        assert!(e.contains("not one of disable, allow, prefer, require, verify-ca, verify-full"));
        let e = resolve(Some("verify-full"), None, &d).unwrap_err();
        assert!(
            e.contains("sslmode=verify-full needs a root certificate"),
            "{e}"
        );
        let e = resolve(Some("require"), Some("system"), &d).unwrap_err();
        assert!(e.contains("sslrootcert=system is not supported"), "{e}");
        // The string wins over the defaults.
        let d = TlsDefaults {
            sslmode: Some("verify-ca".into()),
            sslrootcert: Some("/env/ca.pem".into()),
        };
        assert_eq!(
            resolve(None, None, &d).unwrap(),
            TlsSettings {
                mode: SslMode::VerifyCa,
                root_cert: Some("/env/ca.pem".into())
            }
        );
        assert_eq!(
            resolve(Some("disable"), Some("/url/ca.pem"), &d).unwrap(),
            TlsSettings {
                mode: SslMode::Disable,
                root_cert: Some("/url/ca.pem".into())
            }
        );
    }
}
