"""The Gorse side of the consumer: the sink that executes write plans, the item-label cache and
the derived liked labels."""
