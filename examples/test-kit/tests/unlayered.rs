//! The same app on the bare socket misses the goals `tests/layered.rs` asserts: the
//! scenarios tell a layered app from an unlayered one.
use test_kit_example::{Layering, run_scenarios};

#[test]
fn the_unlayered_app_misses_the_goals() {
    let f = run_scenarios(Layering::Unlayered);
    println!("{f:#?}");
    // It serves correctly...
    assert_eq!(f.correct_responses, 20);
    assert_eq!(f.cancels, 30);
    // Silent closers on every socket do not keep it from accepting for long.
    assert_eq!(f.silent_closers_served, 8);
    let back = f.silent_closer_until_accepting.expect("accepting again");
    assert!(
        back.as_millis() <= 3000,
        "accepting after {} ms",
        back.as_millis()
    );
    // ...but no cancel is classified, and slowloris keeps the second device out.
    assert_eq!(f.cancels_counted, 0);
    assert_eq!(f.stall_reaps, 0);
    assert!(
        f.slowloris_legit_ok_ratio < 0.99,
        "{}",
        f.slowloris_legit_ok_ratio
    );
}
