"""The outbound side: signed release calls to holders and the release-URL policy."""
