//! Process-wide memory settings of the services.

/// Set to `on` to keep transparent huge pages for the process (they are turned off by
/// default, see [`limit_huge_pages`]).
pub const THP_ENV: &str = "FLK_TRANSPARENT_HUGE_PAGES";

/// Turns transparent huge pages off for this process, unless `setting` (the value of
/// [`THP_ENV`]) is `on`; whether they are off afterwards.
///
/// Why: mimalloc advises the kernel to back its arenas with huge pages, and a huge page stays
/// resident as a whole (2 MiB) while any object in it lives. The services keep many bounded
/// caches (redb page caches, fjall memtables and block caches, the hot tier) that threads fill
/// and empty all the time, so huge pages hold memory the heap no longer uses. Measured with
/// `flk soak --duration 30m --rate 300` (docs/RELIABILITY.md): the same binary side by side,
/// 557 MiB resident at minute 30 with huge pages, 470 MiB without. The flag belongs to the
/// process (`prctl(PR_SET_THP_DISABLE)`, inherited by children) and governs every page
/// faulted in after the call.
pub fn limit_huge_pages(setting: Option<&str>) -> std::io::Result<bool> {
    if setting.is_some_and(|s| s.trim().eq_ignore_ascii_case("on")) {
        return rustix::thread::transparent_huge_pages_are_disabled().map_err(Into::into);
    }
    rustix::thread::disable_transparent_huge_pages(true)?;
    Ok(true)
}

/// [`limit_huge_pages`] with [`THP_ENV`] from the environment; a failure is logged, not fatal
/// (a kernel without the flag keeps its default).
pub fn limit_huge_pages_from_env() {
    let setting = std::env::var(THP_ENV).ok();
    match limit_huge_pages(setting.as_deref()) {
        Ok(off) => tracing::debug!(transparent_huge_pages_off = off, "memory settings applied"),
        Err(e) => tracing::warn!(error = %e, "cannot turn transparent huge pages off"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Each test runs in its own process under nextest; the flag is the process's.
    #[test]
    fn huge_pages_are_turned_off_by_default_and_kept_when_asked() {
        let before = rustix::thread::transparent_huge_pages_are_disabled().unwrap();
        assert_eq!(limit_huge_pages(Some("on")).unwrap(), before);
        assert_eq!(
            rustix::thread::transparent_huge_pages_are_disabled().unwrap(),
            before
        );
        assert!(limit_huge_pages(None).unwrap());
        assert!(rustix::thread::transparent_huge_pages_are_disabled().unwrap());
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(status.contains("THP_enabled:\t0"), "{status}");
    }
}
