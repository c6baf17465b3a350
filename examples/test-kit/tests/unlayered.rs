//! The same app on the bare socket misses the goals `tests/layered.rs` asserts, as the
//! real network showed: the scenarios tell a layered app from an unlayered one.
use test_kit_example::{Layering, run_scenarios};

#[test]
fn the_unlayered_app_misses_the_goals() {
    let f = run_scenarios(Layering::Unlayered);
    f.report(Layering::Unlayered);
    let get = |scenario: &str, metric: &str| f.get(scenario, metric);
    // It serves correctly, and its accept loops take silent closers' sockets back...
    assert_eq!(get("correctness", "exact_responses"), Some(40.0));
    assert_eq!(get("cancels", "cut_mid_transfer"), Some(30.0));
    assert_eq!(get("silent_closer", "served"), Some(8.0));
    assert!(get("silent_closer", "ms_until_accepting").is_some_and(|ms| ms <= 3000.0));
    // ...but no cancel is classified, no stall is reaped, and slowloris keeps the
    // second device out.
    assert_eq!(get("cancels", "cancels_counted"), Some(0.0));
    assert_eq!(get("slow_reader", "stall_reaps"), Some(0.0));
    let ratio = get("slowloris", "legit_ok_ratio").expect("measured");
    assert!(ratio < 0.99, "{ratio}");
}
