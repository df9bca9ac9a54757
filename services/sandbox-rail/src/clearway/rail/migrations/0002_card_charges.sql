-- Card charges (docs/design.md §9): the rail keeps the card's brand and last four
-- digits only, never its number; `source` holds the payer's card token.
ALTER TABLE charges ADD COLUMN IF NOT EXISTS card_brand text;
ALTER TABLE charges ADD COLUMN IF NOT EXISTS card_last4 text;
