"""One harness for running the project's processes in isolation: the benchmark, the chaos run
and the Docker smoke run start their processes with it; the tests take their names, ports,
clean-up and faulty links from it (``tests/processes.py`` starts processes its own way, with
asyncio, as pytest's event loop needs).

- ``names``: a run's own names (database, Redis prefix, RabbitMQ exchange and queue, arq
  queue) and its settings as the environment the processes read;
- ``processes``: free ports, the entry points as process groups, waiting for them to answer;
- ``faults``: ``FaultyLink``, a TCP relay that refuses, cuts and stalls on command;
- ``cleanup``: removing exactly what a run made.
"""
