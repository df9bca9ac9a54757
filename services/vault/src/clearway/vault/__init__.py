"""Clearway card vault: card numbers tokenized under envelope encryption, detokenized only
for the submission to the rail (docs/design.md §9)."""
