//! TLS to PostgreSQL over rustls, as `sslmode` asks: encryption without checking the certificate,
//! or a chain checked against PGSSLROOTCERT (or the system's CAs), with or without the host name.

use crate::config::{PostgresUrl, SslMode};
use crate::db::DbError;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::sync::Arc;
use tokio_postgres_rustls::MakeRustlsConnect;

/// The TLS set-up `sslmode` asks for. `prefer` and `require` encrypt without checking the
/// certificate (Heroku's are self-signed); `verify-ca` and `verify-full` check it against
/// PGSSLROOTCERT, or the system's CA certificates when that is unset.
pub(super) fn tls(url: &PostgresUrl) -> Result<MakeRustlsConnect, DbError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3");
    let verifier: Arc<dyn ServerCertVerifier> = match url.ssl_mode {
        SslMode::Disable | SslMode::Prefer | SslMode::Require => {
            Arc::new(Unverified(provider.signature_verification_algorithms))
        }
        SslMode::VerifyCa | SslMode::VerifyFull => {
            let roots = root_certificates(url)?;
            let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|err| DbError::Setup(format!("cannot set up TLS: {err}")))?;
            if url.ssl_mode == SslMode::VerifyCa {
                Arc::new(AnyName(verifier))
            } else {
                verifier
            }
        }
    };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// The most a CA file may hold: a bundle of every public CA is about 250 KiB.
const MAX_CA_FILE_BYTES: u64 = 4 << 20;

fn root_certificates(url: &PostgresUrl) -> Result<RootCertStore, DbError> {
    let mut roots = RootCertStore::empty();
    match &url.root_cert {
        Some(path) => {
            // The message names the setting, never the path: a password pasted into the URL in
            // the wrong place must not be printed.
            let unreadable = |err: &dyn std::fmt::Display| {
                DbError::Setup(format!(
                    "cannot read the CA certificates that sslrootcert (or PGSSLROOTCERT) names: \
                     {err}"
                ))
            };
            let pem = read_bounded(path, MAX_CA_FILE_BYTES).map_err(|err| unreadable(&err))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|err| unreadable(&err))?;
                roots.add(cert).map_err(|err| unreadable(&err))?;
            }
            if roots.is_empty() {
                return Err(DbError::Setup(
                    "the file that sslrootcert (or PGSSLROOTCERT) names holds no CA certificate \
                     (no BEGIN CERTIFICATE block)"
                        .into(),
                ));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(DbError::Setup(
                    "sslmode verify-ca/verify-full needs CA certificates and the system has \
                     none; set PGSSLROOTCERT to a PEM file"
                        .into(),
                ));
            }
        }
    }
    Ok(roots)
}

/// The contents of the regular file at `path`, if it holds at most `limit` bytes. A path from
/// the environment may name anything: /dev/zero never ends, and a FIFO blocks the open itself.
fn read_bounded(path: &std::path::Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Error, ErrorKind, Read};
    if !std::fs::metadata(path)?.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!("larger than {} MiB", limit >> 20),
        ));
    }
    Ok(bytes)
}

/// Accepts any certificate, still checking that the server holds its key: encryption without
/// authentication, as libpq's `require` does.
#[derive(Debug)]
struct Unverified(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// verify-ca: a trusted chain is required, the name on it is not checked.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}
