//! Throwaway TLS certificates made with the `openssl` command (Debian package `openssl`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A throwaway CA and a server certificate for `localhost` / 127.0.0.1 signed by it, in
/// `dir`, file names prefixed with `name`. Valid for two days.
#[derive(Debug, Clone)]
pub struct TestCerts {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    dir: PathBuf,
    name: String,
}

/// Runs `openssl` with `args`; panics (naming the package) when it is missing or fails.
fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("test-support: cannot run openssl ({e}); apt-get install openssl")
        });
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

impl TestCerts {
    /// Makes them; panics (naming the package) when `openssl` is missing or fails.
    pub fn new(dir: &Path, name: &str) -> Self {
        let certs = Self {
            ca: dir.join(format!("{name}-ca.pem")),
            cert: dir.join(format!("{name}-server.pem")),
            key: dir.join(format!("{name}-server.key")),
            dir: dir.to_path_buf(),
            name: name.to_owned(),
        };
        let ca_key = certs.file("ca.key");
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=test ca",
            "-keyout",
            &ca_key,
            "-out",
            &certs.file("ca.pem"),
        ]);
        let ext = certs.file("ext");
        std::fs::write(&ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
            .unwrap_or_else(|e| panic!("test-support: write {ext}: {e}"));
        certs.leaf("server", "/CN=localhost");
        certs
    }

    /// A client certificate and key (CN `test-client`) signed by the same CA, for servers
    /// that require client certificates.
    pub fn client(&self) -> (PathBuf, PathBuf) {
        self.leaf("client", "/CN=test-client");
        (
            self.dir.join(format!("{}-client.pem", self.name)),
            self.dir.join(format!("{}-client.key", self.name)),
        )
    }

    fn file(&self, f: &str) -> String {
        self.dir
            .join(format!("{}-{f}", self.name))
            .display()
            .to_string()
    }

    /// `<leaf>.key` and `<leaf>.pem`, signed by the CA.
    fn leaf(&self, leaf: &str, subject: &str) {
        let (key, csr, pem) = (
            self.file(&format!("{leaf}.key")),
            self.file(&format!("{leaf}.csr")),
            self.file(&format!("{leaf}.pem")),
        );
        openssl(&[
            "req", "-newkey", "rsa:2048", "-nodes", "-subj", subject, "-keyout", &key, "-out", &csr,
        ]);
        openssl(&[
            "x509",
            "-req",
            "-days",
            "2",
            "-in",
            &csr,
            "-CA",
            &self.file("ca.pem"),
            "-CAkey",
            &self.file("ca.key"),
            "-CAcreateserial",
            "-out",
            &pem,
            "-extfile",
            &self.file("ext"),
        ]);
    }
}
