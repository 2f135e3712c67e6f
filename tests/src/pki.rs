//! Certificates for TLS tests, made with rcgen: a CA and, signed by it, member certificates
//! valid for 127.0.0.1 and localhost (server and client use, as etcd members need both) and
//! client certificates; written as PEM files under a directory the caller owns.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

use crate::error::{HarnessError, Result};

fn pki_err(e: impl std::fmt::Display) -> HarnessError {
    HarnessError::Cluster(format!("pki: {e}"))
}

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The PEM certificate.
    pub cert: PathBuf,
    /// The PEM private key.
    pub key: PathBuf,
}

/// A certificate authority whose certificate is at [`Ca::cert`].
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
    /// The CA certificate (PEM).
    pub cert: PathBuf,
}

impl Ca {
    /// A new CA named `name`, its files in `dir`.
    pub fn new(dir: &Path, name: &str) -> Result<Self> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(pki_err)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().map_err(pki_err)?;
        let issuer = CertifiedIssuer::self_signed(params, key).map_err(pki_err)?;
        let cert = dir.join(format!("{name}.crt"));
        std::fs::write(&cert, issuer.pem()).map_err(pki_err)?;
        Ok(Self {
            issuer,
            dir: dir.to_path_buf(),
            cert,
        })
    }

    /// A member certificate `name` (server and client auth, for 127.0.0.1 and localhost).
    pub fn member(&self, name: &str) -> Result<CertFiles> {
        self.issue(
            name,
            vec!["127.0.0.1".into(), "localhost".into()],
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )
    }

    /// A client certificate `name`.
    pub fn client(&self, name: &str) -> Result<CertFiles> {
        self.issue(name, Vec::new(), vec![ExtendedKeyUsagePurpose::ClientAuth])
    }

    fn issue(
        &self,
        name: &str,
        sans: Vec<String>,
        usages: Vec<ExtendedKeyUsagePurpose>,
    ) -> Result<CertFiles> {
        let mut params = CertificateParams::new(sans).map_err(pki_err)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = usages;
        let key = KeyPair::generate().map_err(pki_err)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(pki_err)?;
        let files = CertFiles {
            cert: self.dir.join(format!("{name}.crt")),
            key: self.dir.join(format!("{name}.key")),
        };
        std::fs::write(&files.cert, cert.pem()).map_err(pki_err)?;
        std::fs::write(&files.key, key.serialize_pem()).map_err(pki_err)?;
        Ok(files)
    }
}
