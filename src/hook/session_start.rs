//! `jobwatch hook session-start`: when a session starts, resumes, is
//! cleared or compacted, tell it (as `additionalContext`) which of its jobs
//! still run and which ended without it hearing — so a resumed or crashed
//! session learns them. The outcomes it names count as reported; ones that
//! did not fit its 300 bytes are left for the next `stop`.
//!
//! Output (stdout, exit 0):
//! `{"hookSpecificOutput":{"hookEventName":"SessionStart","additionalContext":"…"}}`;
//! nothing at all when the session has no unreported jobs.

use serde_json::json;

use super::input::Common;
use super::line::context;
use super::look::{Ending, View, look};
use super::session::SessionStore;
use super::{HookContext, HookOutput};

/// The hook's JSON output for a context text.
pub fn output(text: &str) -> serde_json::Value {
    json!({
        "hookSpecificOutput": {
            "hookEventName": "SessionStart",
            "additionalContext": text,
        }
    })
}

/// Runs the hook.
pub fn run(ctx: &HookContext, common: &Common) -> HookOutput {
    let store = SessionStore::new(&ctx.store);
    let jobs = match store.load(&common.session) {
        Ok(f) => f.unreported(),
        Err(e) => return HookOutput::note(e),
    };
    let mut running = Vec::new();
    let mut ended: Vec<(String, Ending)> = Vec::new();
    for job in &jobs {
        match look(job) {
            View::Running { .. } => running.push(job.name.clone()),
            View::Ended(e) => ended.push((job.job_id.clone(), *e)),
            // Missing or mid-restart: the next stop settles it.
            View::Gone => {}
        }
    }
    let endings: Vec<Ending> = ended.iter().map(|(_, e)| e.clone()).collect();
    let (_, named) = context(&running, &endings);
    // Claim what fits before saying it: a stop hook of an earlier turn may
    // have reported some of these a moment ago.
    let candidates: Vec<(String, Ending)> = ended.into_iter().take(named).collect();
    let won = if candidates.is_empty() {
        Vec::new()
    } else {
        let claimed = store.update(&common.session, false, |f| {
            let won: Vec<Ending> = candidates
                .iter()
                .filter(|(id, e)| f.claim(id, &e.outcome))
                .map(|(_, e)| e.clone())
                .collect();
            (!won.is_empty(), won)
        });
        match claimed {
            Ok(won) => won,
            Err(e) => return HookOutput::note(e),
        }
    };
    let (text, _) = context(&running, &won);
    let Some(text) = text else {
        return HookOutput::quiet();
    };
    HookOutput::json(&output(&text))
}
