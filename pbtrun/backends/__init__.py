"""Backends: the only code that starts or signals processes: experiments (``local``, with its
``reaper``) and a helper that shares CPU work with the process that forks it (``aside``)."""
