"""Use cases of billing: plans and Stripe subscriptions, usage sync, webhooks, invoices, reconcile."""
