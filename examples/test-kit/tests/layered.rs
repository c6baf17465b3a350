//! The camera app with its layer stack meets the goals of the real-network check.
//! Remove the layers (`serve_unlayered`, or an empty stack in `server::layers`) and
//! this test fails: `tests/unlayered.rs` shows the same scenarios missing them.
use test_kit_example::{Layering, run_scenarios};

#[test]
fn the_layered_app_meets_the_goals() {
    let f = run_scenarios(Layering::Layered);
    f.report(Layering::Layered);
    let get = |scenario: &str, metric: &str| f.get(scenario, metric);
    assert_eq!(get("correctness", "exact_responses"), Some(40.0));
    // Every cancel classified and counted, none logged as a fault.
    assert_eq!(get("cancels", "cut_mid_transfer"), Some(30.0));
    assert_eq!(get("cancels", "cancels_counted"), Some(30.0));
    // A second device is served while a page keeps 6 connections and a stream busy.
    assert_eq!(get("second_device", "b_ok_runs"), Some(10.0));
    assert_eq!(get("second_device", "a_streams_given_up"), Some(0.0));
    // A stream over the cap is told to come back, and does.
    assert_eq!(get("sse_over_cap", "served_after_retry"), Some(1.0));
    assert_eq!(get("sse_over_cap", "given_up"), Some(0.0));
    // Silent closers on every socket do not keep it from accepting for long (the
    // timewait layer's 2 s linger and a second).
    assert_eq!(get("silent_closer", "served"), Some(8.0));
    let back = get("silent_closer", "ms_until_accepting").expect("accepting again");
    assert!(back <= 3000.0, "accepting after {back} ms");
    // The reaper frees the stalled slot (its 5 s stall deadline, the linger, a second).
    let free = get("slow_reader", "slot_free_ms").expect("the slow reader's slot was freed");
    assert!(free <= 8000.0, "slot free after {free} ms");
    assert!(get("slow_reader", "stall_reaps") >= Some(1.0));
    // Slowloris from one address does not keep a second device out.
    let ratio = get("slowloris", "legit_ok_ratio").expect("measured");
    assert!(ratio >= 0.99, "{ratio}");
    assert!(get("slowloris", "first_ok_ms").is_some_and(|ms| ms <= 2000.0));
    for figure in f.figures.iter().filter(|f| f.metric == "warn_lines") {
        assert_eq!(figure.value, Some(0.0), "{}: WARN lines", figure.scenario);
    }
}
