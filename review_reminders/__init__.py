"""Remind the reviewers of active Microsoft Entra access reviews through Microsoft Graph.

The modules import only the standard library at the top, except `graph`, `jobs` and
`runtime`, which import httpx: the function app imports those lazily, on first use.
"""
