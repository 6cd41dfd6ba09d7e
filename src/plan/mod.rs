//! The deterministic stream plan: which sample goes to which global step and rank.
