//! UI tests for `#[offline_action]`: `tests/ui/pass` must compile and run, `tests/ui/fail` must
//! fail with the checked-in `.stderr`. Regenerate those with `TRYBUILD=overwrite` and read them:
//! each should show one clear error, at the user's code.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
