"""The models that cross a process boundary: API answers, event parts, worker results.

Each is defined here once and used by the service that answers it, by the events that carry
it and by the client that reads it, so the copies cannot drift apart. Request bodies only a
service reads stay with that service.
"""
