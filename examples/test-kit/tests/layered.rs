//! The camera app with its layer stack meets the goals of the real-network check.
//! Remove the layers (`serve_unlayered`, or an empty stack in `server::layers`) and
//! this test fails: `tests/unlayered.rs` shows the same scenarios missing them.
use test_kit_example::{Layering, run_scenarios};

#[test]
fn the_layered_app_meets_the_goals() {
    let f = run_scenarios(Layering::Layered);
    println!("{f:#?}");
    assert_eq!(f.correct_responses, 20);
    assert_eq!(f.cancels, 30);
    // Every cancel classified and counted, none logged as a fault.
    assert_eq!(f.cancels_counted, 30);
    // Silent closers on every socket do not keep it from accepting for long.
    assert_eq!(f.silent_closers_served, 8);
    let back = f.silent_closer_until_accepting.expect("accepting again");
    assert!(
        back.as_millis() <= 3000,
        "accepting after {} ms",
        back.as_millis()
    );
    // The reaper frees the stalled slot (its 5 s stall deadline), well before 8 s.
    let free = f
        .slow_reader_slot_free
        .expect("the slow reader's slot was freed");
    assert!(
        free.as_millis() <= 8000,
        "slot free after {} ms",
        free.as_millis()
    );
    assert!(f.stall_reaps >= 1);
    // Slowloris from one address does not keep a second device out.
    assert!(
        f.slowloris_legit_ok_ratio >= 0.99,
        "{}",
        f.slowloris_legit_ok_ratio
    );
    assert_eq!(f.warn_lines, 0);
}
