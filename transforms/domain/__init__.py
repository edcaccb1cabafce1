"""The rules, with no Beam and no IO: events, facts, payments, records, money, redaction."""
