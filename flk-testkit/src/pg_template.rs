//! A cached, freshly `initdb`-ed PostgreSQL cluster that new servers copy instead of running
//! `initdb` each time (a copy is ~10x faster, and every FLK crate's tests start servers).
//!
//! The template lives in the scratch root as `flk-testkit-pg-template-<key>/data`, where the
//! key hashes the binary directory, the `postgres` binary's size and mtime, the owning uid
//! and [`TEMPLATE_FORMAT`]. It is built in a staging directory and published with one atomic
//! `rename` after a completion marker is written, so concurrent test processes either find a
//! complete template or build their own; a half-built one is never used.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::TestkitError;
use crate::process::RunAs;
use crate::scratch;

/// Bump when `initdb`'s arguments change, so old templates are not reused.
const TEMPLATE_FORMAT: u32 = 1;
/// Written last into a complete template.
const MARKER: &str = "complete";
/// The superuser created by `initdb`.
pub(crate) const SUPERUSER: &str = "postgres";

/// A template cluster to copy from; a private staging copy is removed on drop.
pub(crate) struct Template {
    data: PathBuf,
    private: Option<PathBuf>,
}

impl Template {
    fn published(dir: &Path) -> Self {
        Self {
            data: dir.join("data"),
            private: None,
        }
    }

    /// The template's data directory.
    pub(crate) fn data_dir(&self) -> &Path {
        &self.data
    }
}

impl Drop for Template {
    fn drop(&mut self) {
        if let Some(dir) = &self.private {
            // Best effort: it is scratch space.
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The cached template for these binaries and this owner, building it if needed.
pub(crate) fn get(bin_dir: &Path, run_as: &RunAs) -> Result<Template, TestkitError> {
    get_in(&scratch::root(), bin_dir, run_as)
}

fn get_in(root: &Path, bin_dir: &Path, run_as: &RunAs) -> Result<Template, TestkitError> {
    let published = root.join(format!(
        "flk-testkit-pg-template-{:016x}",
        key(bin_dir, run_as)
    ));
    if published.join(MARKER).is_file() {
        return Ok(Template::published(&published));
    }
    let staging = tempfile::Builder::new()
        .prefix("flk-testkit-pg-template-staging-")
        .tempdir_in(root)
        .map_err(|e| TestkitError::io(format!("creating a directory in {}", root.display()), e))?;
    run_as.chown(staging.path())?;
    initdb(
        bin_dir,
        run_as,
        staging.path(),
        &staging.path().join("data"),
    )?;
    let mut marker = std::fs::File::create(staging.path().join(MARKER))
        .map_err(|e| TestkitError::io("writing the template marker", e))?;
    marker
        .write_all(b"initdb complete\n")
        .map_err(|e| TestkitError::io("writing the template marker", e))?;
    // Other test processes read the template (its data directory stays private to its owner).
    std::fs::set_permissions(staging.path(), std::fs::Permissions::from_mode(0o755))
        .map_err(|e| TestkitError::io("opening the template directory", e))?;
    let staging = staging.keep();
    match std::fs::rename(&staging, &published) {
        Ok(()) => Ok(Template::published(&published)),
        Err(_) if published.join(MARKER).is_file() => {
            // Another process published first: use theirs, drop ours.
            let _ = std::fs::remove_dir_all(&staging);
            Ok(Template::published(&published))
        }
        // Something unusable occupies the name: copy from our own build this time.
        Err(_) => Ok(Template {
            data: staging.join("data"),
            private: Some(staging),
        }),
    }
}

/// Copies a cluster directory tree, keeping modes, owned by `run_as`.
pub(crate) fn copy_tree(from: &Path, to: &Path, run_as: &RunAs) -> Result<(), TestkitError> {
    let io = |what: &str, path: &Path, e| TestkitError::io(format!("{what} {}", path.display()), e);
    let meta = std::fs::metadata(from).map_err(|e| io("reading", from, e))?;
    std::fs::create_dir(to).map_err(|e| io("creating", to, e))?;
    std::fs::set_permissions(to, meta.permissions()).map_err(|e| io("chmod", to, e))?;
    run_as.chown(to)?;
    for entry in std::fs::read_dir(from).map_err(|e| io("listing", from, e))? {
        let entry = entry.map_err(|e| io("listing", from, e))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().map_err(|e| io("reading", &src, e))?;
        if kind.is_dir() {
            copy_tree(&src, &dst, run_as)?;
        } else if kind.is_symlink() {
            let target = std::fs::read_link(&src).map_err(|e| io("reading", &src, e))?;
            std::os::unix::fs::symlink(target, &dst).map_err(|e| io("linking", &dst, e))?;
        } else {
            std::fs::copy(&src, &dst).map_err(|e| io("copying", &src, e))?;
            run_as.chown(&dst)?;
        }
    }
    Ok(())
}

/// Runs `initdb` (trust auth, superuser `postgres`, UTF8, no locale, no fsync).
pub(crate) fn initdb(
    bin_dir: &Path,
    run_as: &RunAs,
    cwd: &Path,
    data_dir: &Path,
) -> Result<(), TestkitError> {
    let mut cmd = Command::new(bin_dir.join("initdb"));
    cmd.arg("-D")
        .arg(data_dir)
        .args([
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ])
        .current_dir(cwd)
        .env_remove("PGDATA");
    run_as.apply(&mut cmd);
    let output = cmd
        .output()
        .map_err(|e| TestkitError::io("running initdb", e))?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Err(TestkitError::CommandFailed {
        what: format!("initdb -D {}", data_dir.display()),
        status: output.status.to_string(),
        output: text,
    })
}

/// FNV-1a over everything that makes a template reusable.
fn key(bin_dir: &Path, run_as: &RunAs) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            hash ^= u64::from(*b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    feed(bin_dir.as_os_str().as_encoded_bytes());
    if let Ok(meta) = std::fs::metadata(bin_dir.join("postgres")) {
        feed(&meta.len().to_le_bytes());
        feed(&meta.mtime().to_le_bytes());
    }
    feed(&run_as.uid().to_le_bytes());
    feed(&TEMPLATE_FORMAT.to_le_bytes());
    hash
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::locate;

    /// Several processes building the template at once all end up with the one published
    /// copy, and no staging directory is left behind.
    #[test]
    fn concurrent_builders_share_one_published_template() {
        let root = scratch::tempdir("flk-testkit-template-test-").expect("tempdir");
        let bin_dir = locate::pg_bin_dir().expect("postgresql installed");
        let run_as = RunAs::unprivileged("postgres").expect("server user");
        run_as.chown(root.path()).expect("chown root");
        let paths: Vec<PathBuf> = std::thread::scope(|s| {
            let builders: Vec<_> = (0..3)
                .map(|_| {
                    s.spawn(|| {
                        let template = get_in(root.path(), &bin_dir, &run_as).expect("template");
                        assert!(template.data_dir().join("PG_VERSION").is_file());
                        template.data_dir().to_path_buf()
                    })
                })
                .collect();
            builders
                .into_iter()
                .map(|b| b.join().expect("builder"))
                .collect()
        });
        assert!(paths.windows(2).all(|w| w[0] == w[1]), "{paths:?}");
        let entries: Vec<_> = std::fs::read_dir(root.path())
            .expect("list root")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
    }
}
