//! Test certificates made with the `openssl` commands the README gives
//! operators: a CA, and certificates it signs for 127.0.0.1 usable both
//! by servers and by clients (nodes present theirs both ways).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA in a directory, and the certificates it issued there.
pub struct Pki {
    pub dir: PathBuf,
    /// The CA's file names' prefix (`<name>.crt`, `<name>.key`).
    name: String,
}

/// Paths of one certificate and its key.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: String,
    pub key: String,
}

fn openssl(args: &[&str], dir: &Path) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (scripts/test installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    /// A new CA named `name` in `dir`.
    pub fn new(dir: &Path, name: &str) -> Pki {
        std::fs::create_dir_all(dir).unwrap();
        openssl(
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-days",
                "3650",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.crt"),
            ],
            dir,
        );
        Pki {
            dir: dir.to_path_buf(),
            name: name.to_string(),
        }
    }

    pub fn ca(&self) -> String {
        self.path(&format!("{}.crt", self.name))
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    /// A certificate for `name`, valid for 127.0.0.1 and localhost, for
    /// servers and clients alike.
    pub fn issue(&self, name: &str) -> Issued {
        openssl(
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ],
            &self.dir,
        );
        let ext = format!("{name}.ext");
        std::fs::write(
            self.dir.join(&ext),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n",
        )
        .unwrap();
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{}.crt", self.name),
                "-CAkey",
                &format!("{}.key", self.name),
                "-CAcreateserial",
                "-days",
                "825",
                "-extfile",
                &ext,
                "-out",
                &format!("{name}.crt"),
            ],
            &self.dir,
        );
        Issued {
            cert: self.path(&format!("{name}.crt")),
            key: self.path(&format!("{name}.key")),
        }
    }
}
