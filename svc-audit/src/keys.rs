//! The log's Ed25519 signer key: one stable key per log, kept in a file as the signed-note
//! signer key string `PRIVATE+KEY+<name>+<key id hex>+<base64(0x01 || seed)>`.
//!
//! A configured key file must exist. Without one, `<data_dir>/log.key` is used and, on the
//! first start, generated: written to a fresh temporary file with mode 0600, fsync'd, renamed
//! into place and the directory fsync'd, so a crash leaves either no key or the whole key.

use std::fs;
use std::io::Write as _;
use std::path::Path;

use flk_tlog::LogSigner;

use crate::error::AuditError;

/// File name of the generated key inside the data directory.
pub const DEFAULT_KEY_FILE: &str = "log.key";

/// Loads the signer from `path`; when `generate_as` is given and the file does not exist,
/// generates a key with that name first.
pub fn load_or_generate(path: &Path, generate_as: Option<&str>) -> Result<LogSigner, AuditError> {
    let key_err = |message: String| AuditError::Key(message);
    match fs::read_to_string(path) {
        Ok(text) => {
            warn_if_readable_by_others(path);
            return LogSigner::from_private_key(text.trim())
                .map_err(|e| key_err(format!("{}: {e}", path.display())));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(key_err(format!("cannot read {}: {e}", path.display()))),
    }
    let Some(name) = generate_as else {
        return Err(key_err(format!(
            "log key file {} does not exist",
            path.display()
        )));
    };
    let signer = LogSigner::generate(name).map_err(|e| key_err(e.to_string()))?;
    write_private(path, &format!("{}\n", signer.private_key_string()))
        .map_err(|e| key_err(format!("cannot write {}: {e}", path.display())))?;
    tracing::info!(path = %path.display(), key = %signer.verifier_key_string(), "generated the log key");
    Ok(signer)
}

/// Writes `text` to `path` atomically and durably, readable by the owner only.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)?;
    fs::File::open(dir)?.sync_all()
}

fn warn_if_readable_by_others(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %path.display(), "log key file is accessible by group or others");
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_stable_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.key");
        let a = load_or_generate(&path, Some("audit.example/log")).unwrap();
        let b = load_or_generate(&path, Some("audit.example/log")).unwrap();
        assert_eq!(a.verifier_key_string(), b.verifier_key_string());
        assert_eq!(a.name(), "audit.example/log");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(!path.with_extension("tmp").exists());
    }

    #[test]
    fn configured_key_must_exist_and_parse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("configured.key");
        let err = load_or_generate(&path, None).unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
        fs::write(&path, "PRIVATE+KEY+x+00000000+AQ==\n").unwrap();
        assert!(load_or_generate(&path, None).is_err());
        let signer = LogSigner::generate("k").unwrap();
        fs::write(&path, signer.private_key_string()).unwrap();
        assert_eq!(
            load_or_generate(&path, None).unwrap().verifier_key_string(),
            signer.verifier_key_string()
        );
    }
}
