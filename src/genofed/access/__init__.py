"""Governed access: who the caller is (OIDC + GA4GH Passports), what they may see (tiers, visas,
DUO consent), the committee workflow that grants it, and the audit trail of every decision."""
