"""The HTTP service for an exported student: `run_predict_onnx.py --serve`.

    options.py       ServiceOptions (the flags) and ServiceSettings (what a serving process is handed)
    schema.py        request JSON -> request lines and examples; predictions -> answer JSON
    model_service.py one worker's ONNX session: loading, warm-up, answering requests
    batching.py      optional dynamic micro-batching of concurrent requests
    metrics.py       Prometheus metrics, aggregated across worker processes
    metadata.py      what GET /metadata says
    app.py           the Starlette application: /predict, /health, /metadata, /metrics and the page at /
    page.html        the page at /, to try the model by hand
    server.py        the listening socket, uvicorn with N worker processes, graceful shutdown
    __main__.py      `python -m xdistil.serving`: the process run_predict_onnx.py --serve becomes
    service_process.py  a service started as a subprocess (tests, benchmark)
    browser.py       headless Chromium over the DevTools protocol (the page's test and the benchmark)
"""
