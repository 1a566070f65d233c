//! One conformance suite (`common/suite.rs`) run against every backend, each test on its own
//! private store (embedded in a temp dir; Redis and PostgreSQL on private servers).

mod common;

macro_rules! conformance {
    ($backend:ident, $name:literal) => {
        mod $backend {
            use crate::common::{self, suite};

            macro_rules! case {
                ($case:ident) => {
                    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                    async fn $case() {
                        let fixture = common::$backend().await;
                        suite::$case(&fixture).await;
                    }
                };
            }

            case!(get_on_missing_key_is_none);
            case!(insert_then_get);
            case!(first_write_wins);
            case!(tenants_are_independent);
            case!(concurrent_puts_have_exactly_one_winner);
            case!(concurrent_distinct_keys_all_insert);
            case!(expired_entry_is_absent_and_replaced);
            case!(purge_removes_only_expired_entries);
            case!(odd_tenant_ids_work);
            case!(invalid_arguments_are_refused);

            #[tokio::test]
            async fn ready_and_named() {
                let fixture = common::$backend().await;
                suite::ready_and_named(&fixture, $name).await;
            }
        }
    };
}

conformance!(embedded, "embedded");
conformance!(redis, "redis");
conformance!(postgres, "postgres");
