//! Value parsers for clap: job names and breaker keys, with errors that say
//! what was wrong and what would be right. Durations are the core's
//! ([`jobwatch_core::spec`]), shared with the MCP server.

use jobwatch_core::breaker::BreakerKey;
use jobwatch_core::model::JobName;

pub use jobwatch_core::spec::{MAX_DURATION, duration, ms, positive_duration};

/// A job name.
pub fn job_name(s: &str) -> Result<JobName, String> {
    JobName::parse(s).map_err(|e| e.to_string())
}

/// A circuit-breaker key (same syntax as a job name).
pub fn breaker_key(s: &str) -> Result<BreakerKey, String> {
    BreakerKey::parse(s).map_err(|e| e.to_string())
}
