"""`just chaos`: the whole pipeline under load while processes die and links break.

Two APIs, two consumers and two workers run as real processes on loopback, each reaching
PostgreSQL, Redis and RabbitMQ through a ``tools.harness.faults.FaultyLink`` relay. A mixed client
load (``chaos.load``) runs while a fault schedule (``chaos.schedule``) kills processes and
cuts, stalls and restores the links; then ``chaos.checks`` waits for the pipeline to settle
and checks that nothing was lost or done twice, and ``chaos.report`` prints the table.
"""
