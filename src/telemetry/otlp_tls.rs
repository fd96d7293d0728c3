//! TLS for the OTLP http exporters (docs/behaviour.md, "Usage, analytics and telemetry"):
//! rustls with the ring provider, handed to reqwest ready-made, so the build has no
//! OpenSSL and no second crypto provider (reqwest's own rustls setup would want aws-lc-rs).
//!
//! Trust: the CA file of `OTEL_EXPORTER_OTLP_CERTIFICATE` (or the signal's own variable)
//! when set, and then only it, as the OTel SDKs do; otherwise the public web roots. A
//! client certificate and key are presented when both are configured. A file that cannot
//! be read or holds nothing usable stops the start with the variable and the path.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::OtlpSignalSettings;

/// The blocking HTTP client of one OTLP exporter. Redirects are not followed: the export
/// headers may carry the collector's credential, which must not travel to another origin
/// (docs/security.md).
pub(crate) fn blocking_client(
    timeout: Duration,
    signal: &OtlpSignalSettings<'_>,
) -> anyhow::Result<reqwest::blocking::Client> {
    let tls = client_config(signal.certificate, signal.client)?;
    // The blocking client starts its own runtime, which panics when built on a Tokio
    // thread (this may run inside actix's), hence a plain thread.
    let client = std::thread::spawn(move || {
        reqwest::blocking::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .tls_backend_preconfigured(tls)
            .build()
    })
    .join()
    .map_err(|_| anyhow!("building the OTLP http client panicked"))??;
    Ok(client)
}

/// The metric exporter's client: opentelemetry-otlp reports any failure to send as
/// "network error", so the reason (a refused certificate, a refused connection) is logged
/// here, with the URL and never the headers.
#[derive(Debug)]
pub(crate) struct ExplainingClient(pub reqwest::blocking::Client);

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for ExplainingClient {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> Result<
        opentelemetry_http::Response<opentelemetry_http::Bytes>,
        opentelemetry_http::HttpError,
    > {
        let url = request.uri().to_string();
        self.0.send_bytes(request).await.inspect_err(|e| {
            tracing::warn!(
                url,
                error = super::otlp_http::error_chain(e.as_ref()),
                "OTLP metric export failed"
            );
        })
    }
}

/// The rustls configuration: `certificate` is (variable, CA file), `client` is
/// (certificate file, key file).
pub(crate) fn client_config(
    certificate: Option<(&'static str, &Path)>,
    client: Option<(&Path, &Path)>,
) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    match certificate {
        Some((var, path)) => {
            for cert in read_certificates(var, path)? {
                roots.add(cert).map_err(|e| {
                    anyhow!(
                        "{var}: {} holds a certificate that cannot be a CA: {e}",
                        path.display()
                    )
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("the TLS provider offers no protocol version")?
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert_path, key_path)) => {
            const CERT_VAR: &str = "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE";
            const KEY_VAR: &str = "OTEL_EXPORTER_OTLP_CLIENT_KEY";
            let chain = read_certificates(CERT_VAR, cert_path)?;
            let pem = read(KEY_VAR, key_path)?;
            let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
                anyhow!(
                    "{KEY_VAR}: {} holds no PEM private key ({e})",
                    key_path.display()
                )
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                anyhow!(
                    "{CERT_VAR}/{KEY_VAR}: {} and {} are not a usable certificate and key: {e}",
                    cert_path.display(),
                    key_path.display()
                )
            })?
        }
    };
    Ok(config)
}

fn read(var: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| anyhow!("{var}: cannot read {}: {e}", path.display()))
}

/// Every PEM certificate in the file; none is an error.
fn read_certificates(var: &str, path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = read(var, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("{var}: {} is not a PEM file: {e}", path.display()))?;
    if certs.is_empty() {
        bail!(
            "{var}: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        );
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_ca_files_name_the_variable_and_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nowhere.pem");
        let err = client_config(Some(("OTEL_EXPORTER_OTLP_CERTIFICATE", &missing)), None)
            .expect_err("missing file")
            .to_string();
        assert!(
            err.contains("OTEL_EXPORTER_OTLP_CERTIFICATE")
                && err.contains(&missing.display().to_string()),
            "{err}"
        );

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let err = client_config(Some(("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", &empty)), None)
            .expect_err("no certificate")
            .to_string();
        assert!(
            err.contains("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE")
                && err.contains(&empty.display().to_string())
                && err.contains("no PEM certificate"),
            "{err}"
        );
    }

    #[test]
    fn no_ca_file_trusts_the_public_roots() {
        assert!(client_config(None, None).is_ok());
    }
}
