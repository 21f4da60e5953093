"""The state layer: the sweep's records and their transitions (``records``), their JSON shape and
its format migrations (``codec``, ``migrations``), the merge of an edited spec (``merge``), and
the files that hold them: paths (``paths``), atomic writes (``files``), ``pbtrun.json``'s layout
(``layout``), loading and saving (``store``), the journal (``journal``), the scheduler's writer
(``writer``), locks (``locks``) and the control FIFO (``control``). Knows no backend."""
