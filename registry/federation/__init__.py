"""Federation: independently operated Zoll nodes that pin each other's keys, witness each
other's logs, replicate what their peers admitted (judging it again), and agree k of n.
See docs/federation.md."""
