"""Orders: the shop's orders, their saga, the product catalog and its stock, its customers' events."""
