#!/bin/bash
# Healthy once the AMQP listener accepts connections; RabbitMQ opens it at the end of its boot.
# (A plain TCP check: rabbitmq-diagnostics would start an Erlang VM on every probe.)
exec 3<>/dev/tcp/127.0.0.1/5672
