//! The private PKI of an embedded stack: on first start `flk up` makes a CA and, signed by
//! it, one server certificate per internal service and one client certificate the services
//! and the gateway present to each other, all under `<data-dir>/tls/`. Later starts reuse
//! them; a directory missing any file is regenerated whole (every service is restarted with
//! the stack, so nothing else holds the old ones).
//!
//! | file | what |
//! |---|---|
//! | `ca.pem`, `ca.key` | the CA (ECDSA P-256) |
//! | `server.pem`, `server.key` | the internal ports' certificate: `localhost`, `127.0.0.1`, `::1` |
//! | `client.pem`, `client.key` | the mesh client's certificate (`flk-mesh-client`) |
//!
//! Keys are written 0600; only the owner of the data directory can act as a mesh member.

use std::path::{Path, PathBuf};

use flk_runtime::security::{PeerSettings, TlsSettings, write_secret};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The files of a mesh PKI.
#[derive(Debug, Clone)]
pub struct MeshPki {
    pub dir: PathBuf,
}

const FILES: [&str; 6] = [
    "ca.pem",
    "ca.key",
    "server.pem",
    "server.key",
    "client.pem",
    "client.key",
];

/// The name the services' certificate is checked against.
pub const SERVER_NAME: &str = "localhost";

impl MeshPki {
    /// Loads the PKI in `dir`, generating it when any file is missing.
    pub fn ensure(dir: &Path) -> anyhow::Result<MeshPki> {
        let pki = MeshPki {
            dir: dir.to_path_buf(),
        };
        if FILES.iter().all(|f| dir.join(f).is_file()) {
            return Ok(pki);
        }
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
        for f in FILES {
            // Regenerated whole: stale halves must not survive.
            let _ = std::fs::remove_file(dir.join(f));
        }
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.distinguished_name
            .push(DnType::CommonName, "flk up mesh CA");
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_cert = ca.self_signed(&ca_key)?;
        let ca_key_pem = ca_key.serialize_pem();
        let issuer = Issuer::new(ca, ca_key);
        let leaf = |cn: &str, sans: Vec<String>, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(sans)?;
            params.distinguished_name.push(DnType::CommonName, cn);
            params.extended_key_usages = vec![usage];
            let cert = params.signed_by(&key, &issuer)?;
            anyhow::Ok((cert.pem(), key.serialize_pem()))
        };
        let (server, server_key) = leaf(
            "flk-mesh-server",
            vec![SERVER_NAME.into(), "127.0.0.1".into(), "::1".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        let (client, client_key) = leaf(
            "flk-mesh-client",
            vec!["flk-mesh-client".into()],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        // Keys first, certificates last: a crash in between leaves a set that is regenerated.
        write_secret(&dir.join("ca.key"), &ca_key_pem)?;
        write_secret(&dir.join("server.key"), &server_key)?;
        write_secret(&dir.join("client.key"), &client_key)?;
        write_public(&dir.join("server.pem"), &server)?;
        write_public(&dir.join("client.pem"), &client)?;
        write_public(&dir.join("ca.pem"), &ca_cert.pem())?;
        Ok(pki)
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// An internal port's settings: the server certificate, clients need one from the CA.
    pub fn server(&self) -> TlsSettings {
        TlsSettings {
            cert: Some(self.path("server.pem")),
            key: Some(self.path("server.key")),
            client_ca: Some(self.path("ca.pem")),
        }
    }

    /// A mesh member's settings towards the others.
    pub fn client(&self) -> PeerSettings {
        PeerSettings {
            ca: Some(self.path("ca.pem")),
            cert: Some(self.path("client.pem")),
            key: Some(self.path("client.key")),
            server_name: Some(SERVER_NAME.into()),
            token_file: None,
            token_env: None,
        }
    }
}

fn write_public(path: &Path, pem: &str) -> anyhow::Result<()> {
    std::fs::write(path, pem).map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_reused_and_regenerated_when_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("tls");
        let pki = MeshPki::ensure(&tls).unwrap();
        let ca = std::fs::read(pki.path("ca.pem")).unwrap();
        MeshPki::ensure(&tls).unwrap();
        assert_eq!(std::fs::read(pki.path("ca.pem")).unwrap(), ca);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(pki.path("client.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{mode:o}");
        }
        // The files load as the runtime loads them.
        flk_runtime::tls::server_config(&pki.server().server_tls().unwrap()).unwrap();
        flk_runtime::client::Peer::resolve(&pki.client(), |_| None).unwrap();
        std::fs::remove_file(pki.path("server.key")).unwrap();
        MeshPki::ensure(&tls).unwrap();
        assert_ne!(std::fs::read(pki.path("ca.pem")).unwrap(), ca);
    }
}
