"""Fleet scale on Ray (``perception fleet run|eval``), in data-flow order:

    inputs.py  manifest (CSV / JSON lines), globs, paths or fsspec URLs → FleetInput per video or image folder
    ranges.py  a video → frame ranges; a range's frames; its .npz file, written atomically
    worker.py  the Ray actor: one loaded model; a range decoded and run through the network → its .npz
    merge.py   a video's ranges, checked for continuity, → fusion in frame order → results.jsonl + summary
    run.py     the Ray driver: actor pool, retries, resume, progress, fleet summary; the scaling table
    evaluate.py  the evaluation of ``perception eval`` sharded over workers, merged exactly

The network is stateless per frame, so ranges of one drive run on many workers at once; fusion (tracking,
lane filter) is stateful, so it runs once per video over the merged ranges, in frame order. That keeps
the results equal to a single-process ``perception run``, frame for frame.
"""
