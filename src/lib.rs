//! manyi (满意): resident satisfaction figures from 好差评 ratings and
//! questionnaires, reported to the offices responsible by email.
//!
//! See ARCHITECTURE.md for the map of modules and the invariants.

#![warn(missing_docs)]

pub mod aggregate;
pub mod calendar;
pub mod cli;
pub mod collect;
pub mod config;
pub mod deliver;
pub mod demo;
pub mod intake;
pub mod model;
pub mod period;
pub mod pipeline;
pub mod privacy;
pub mod render;
pub mod retry;
pub mod schedule;
pub mod serve;
pub mod site;
pub mod store;
