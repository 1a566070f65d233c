//! Finding the installed PostgreSQL and Redis server binaries.

use std::env;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::TestkitError;

/// Directory holding `initdb` and `postgres`; overrides the search.
pub const ENV_PG_BIN_DIR: &str = "FLK_PG_BIN_DIR";
/// Path of the `redis-server` binary; overrides the search.
pub const ENV_REDIS_SERVER: &str = "FLK_REDIS_SERVER";
/// Debian's layout: one directory per major version.
const PG_LIB_ROOT: &str = "/usr/lib/postgresql";

/// The directory holding `initdb` and `postgres`.
///
/// Order: `$FLK_PG_BIN_DIR`; the newest `/usr/lib/postgresql/<version>/bin`; the directory of
/// `initdb` on `PATH` if `postgres` sits beside it.
pub fn pg_bin_dir() -> Result<PathBuf, TestkitError> {
    pg_bin_dir_from(env::var_os(ENV_PG_BIN_DIR).map(PathBuf::from))
}

fn pg_bin_dir_from(overridden: Option<PathBuf>) -> Result<PathBuf, TestkitError> {
    let not_found = |detail: String| TestkitError::BinaryNotFound {
        what: "postgresql server binaries (initdb, postgres)",
        detail,
        package: "postgresql",
        env_var: ENV_PG_BIN_DIR,
    };
    if let Some(dir) = overridden {
        return if has_pg_binaries(&dir) {
            Ok(dir)
        } else {
            Err(not_found(format!(
                "{ENV_PG_BIN_DIR}={} has no executable initdb and postgres",
                dir.display()
            )))
        };
    }
    let mut versions: Vec<(Vec<u64>, PathBuf)> = std::fs::read_dir(PG_LIB_ROOT)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = parse_version(&name)?;
            let bin = entry.path().join("bin");
            has_pg_binaries(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    if let Some(initdb) = find_on_path("initdb")
        && let Some(dir) = initdb.parent()
        && has_pg_binaries(dir)
    {
        return Ok(dir.to_path_buf());
    }
    Err(not_found(format!("searched {PG_LIB_ROOT}/*/bin and PATH")))
}

/// The `redis-server` binary: `$FLK_REDIS_SERVER`, else `redis-server` on `PATH`.
pub fn redis_server() -> Result<PathBuf, TestkitError> {
    redis_server_from(env::var_os(ENV_REDIS_SERVER).map(PathBuf::from))
}

fn redis_server_from(overridden: Option<PathBuf>) -> Result<PathBuf, TestkitError> {
    let not_found = |detail: String| TestkitError::BinaryNotFound {
        what: "redis-server",
        detail,
        package: "redis-server",
        env_var: ENV_REDIS_SERVER,
    };
    if let Some(path) = overridden {
        return if is_executable(&path) {
            Ok(path)
        } else {
            Err(not_found(format!(
                "{ENV_REDIS_SERVER}={} is not an executable file",
                path.display()
            )))
        };
    }
    find_on_path("redis-server").ok_or_else(|| not_found("searched PATH".to_owned()))
}

fn has_pg_binaries(dir: &Path) -> bool {
    is_executable(&dir.join("initdb")) && is_executable(&dir.join("postgres"))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// `"15"` -> `[15]`, `"9.6"` -> `[9, 6]`; anything else is not a version directory.
fn parse_version(name: &str) -> Option<Vec<u64>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::{ENV_PG_BIN_DIR, parse_version, pg_bin_dir_from, redis_server_from};

    #[test]
    fn versions_compare_numerically() {
        let mut v = [
            parse_version("9.6"),
            parse_version("15"),
            parse_version("10"),
        ];
        v.sort();
        assert_eq!(v[2], Some(vec![15]));
        assert_eq!(parse_version("15beta"), None);
    }

    #[test]
    fn a_bad_override_says_how_to_install() {
        let bogus = Some(std::path::PathBuf::from("/nonexistent/flk"));
        let pg = pg_bin_dir_from(bogus.clone()).expect_err("bogus dir accepted");
        assert!(
            pg.to_string().contains("apt-get install -y postgresql"),
            "{pg}"
        );
        assert!(pg.to_string().contains(ENV_PG_BIN_DIR), "{pg}");
        let redis = redis_server_from(bogus).expect_err("bogus path accepted");
        assert!(
            redis
                .to_string()
                .contains("apt-get install -y redis-server"),
            "{redis}"
        );
    }

    #[test]
    fn the_installed_binaries_are_found() {
        let bin = pg_bin_dir_from(None).expect("postgresql installed");
        assert!(bin.join("postgres").is_file());
        let redis: PathBuf = redis_server_from(None).expect("redis-server installed");
        assert!(redis.is_file());
    }
}
