"""The web portal under /portal: server-rendered pages for researchers, committee members,
operators and auditors, over the same services and access policy as the APIs."""
