//! The harness's condition wait, checked on its own: every other test
//! trusts it to fail with what it waited for, to stop at the first error
//! a probe reports, and to hand back the value that ended the wait.

use crate::harness::*;
use std::time::Duration;

#[tokio::test]
async fn a_wait_that_times_out_names_what_it_waited_for() -> TestResult {
    let mut looks = 0;
    let err = eventually(Duration::from_secs(1), "the moon to turn blue", || {
        looks += 1;
        false
    })
    .await
    .expect_err("a condition that never holds times out");
    let text = err.to_string();
    assert!(text.contains("the moon to turn blue"), "{text}");
    assert!(looks >= 2, "looked {looks} times before giving up");
    Ok(())
}

#[tokio::test]
async fn a_probe_error_ends_the_wait_at_once() -> TestResult {
    let mut looks = 0;
    let err = until::<()>(Duration::from_secs(600), "an answer", || {
        looks += 1;
        Err("the database is gone".into())
    })
    .await
    .expect_err("a probe error is returned");
    assert_eq!(err.to_string(), "the database is gone");
    assert_eq!(looks, 1, "a failed probe is not asked again");
    Ok(())
}

#[tokio::test]
async fn a_wait_returns_the_value_that_ended_it() -> TestResult {
    let mut n = 0;
    let got = until(Duration::from_secs(60), "the third look", || {
        n += 1;
        Ok((n == 3).then_some(n * 10))
    })
    .await?;
    assert_eq!(got, 30);
    let blocking = until_blocking(
        Duration::from_secs(60),
        Duration::from_millis(1),
        "the fifth look",
        {
            let mut m = 0;
            move || {
                m += 1;
                Ok((m == 5).then_some(m))
            }
        },
    )?;
    assert_eq!(blocking, 5);
    Ok(())
}
