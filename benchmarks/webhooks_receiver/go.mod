module clearway/benchmarks/webhooks_receiver

go 1.22
