"""Seed the payment templates (email, SMS, push; English and French) that payments events use."""
from __future__ import annotations

from django.db import migrations

from notifications.seeding import template_seeder

SAMPLE = {
    "paymentId": "pay_123",
    "amount": "99.99",
    "currency": "USD",
    "merchantId": "shop_1",
    "orderId": "order_1",
    "description": "A book",
    "reason": "card_declined",
    "message": "The card was declined.",
}

HTML = (
    '<div style="font-family:sans-serif">{content}'
    "<p style=\"color:#666;font-size:12px\">{ref}: {{{{ paymentId }}}}</p></div>"
)

# (key, locale): (email subject, email text, email html, sms text, push title, push text)
TEMPLATES = {
    ("payment_captured", "en"): (
        "Payment received: {{ amount }} {{ currency }}",
        "Hello,\n\nWe received your payment of {{ amount }} {{ currency }}"
        "{% if description %} for {{ description }}{% endif %}.\n\nPayment reference: {{ paymentId }}\n",
        HTML.format(
            content="<p>Hello,</p><p>We received your payment of <strong>{{ amount }} {{ currency }}</strong>"
            "{% if description %} for {{ description }}{% endif %}.</p>",
            ref="Payment reference",
        ),
        "Payment of {{ amount }} {{ currency }} received. Ref {{ paymentId }}.",
        "Payment received",
        "{{ amount }} {{ currency }} paid{% if description %} for {{ description }}{% endif %}.",
    ),
    ("payment_captured", "fr"): (
        "Paiement reçu : {{ amount }} {{ currency }}",
        "Bonjour,\n\nNous avons bien reçu votre paiement de {{ amount }} {{ currency }}"
        "{% if description %} pour {{ description }}{% endif %}.\n\nRéférence du paiement : {{ paymentId }}\n",
        HTML.format(
            content="<p>Bonjour,</p><p>Nous avons bien reçu votre paiement de "
            "<strong>{{ amount }} {{ currency }}</strong>{% if description %} pour {{ description }}{% endif %}.</p>",
            ref="Référence du paiement",
        ),
        "Paiement de {{ amount }} {{ currency }} reçu. Réf. {{ paymentId }}.",
        "Paiement reçu",
        "{{ amount }} {{ currency }} payés{% if description %} pour {{ description }}{% endif %}.",
    ),
    ("payment_failed", "en"): (
        "Payment not completed: {{ amount }} {{ currency }}",
        "Hello,\n\nYour payment of {{ amount }} {{ currency }} could not be completed"
        "{% if message %}: {{ message }}{% else %}.{% endif %}\n\nPayment reference: {{ paymentId }}\n",
        HTML.format(
            content="<p>Hello,</p><p>Your payment of <strong>{{ amount }} {{ currency }}</strong> could not be "
            "completed{% if message %}: {{ message }}{% else %}.{% endif %}</p>",
            ref="Payment reference",
        ),
        "Payment of {{ amount }} {{ currency }} failed{% if reason %} ({{ reason }}){% endif %}. Ref {{ paymentId }}.",
        "Payment failed",
        "{{ amount }} {{ currency }} could not be paid{% if message %}: {{ message }}{% endif %}",
    ),
    ("payment_failed", "fr"): (
        "Paiement non abouti : {{ amount }} {{ currency }}",
        "Bonjour,\n\nVotre paiement de {{ amount }} {{ currency }} n'a pas pu aboutir"
        "{% if message %} : {{ message }}{% else %}.{% endif %}\n\nRéférence du paiement : {{ paymentId }}\n",
        HTML.format(
            content="<p>Bonjour,</p><p>Votre paiement de <strong>{{ amount }} {{ currency }}</strong> n'a pas pu "
            "aboutir{% if message %} : {{ message }}{% else %}.{% endif %}</p>",
            ref="Référence du paiement",
        ),
        "Paiement de {{ amount }} {{ currency }} refusé{% if reason %} ({{ reason }}){% endif %}. Réf. {{ paymentId }}.",
        "Paiement refusé",
        "{{ amount }} {{ currency }} n'ont pas pu être payés{% if message %} : {{ message }}{% endif %}",
    ),
    ("payment_refunded", "en"): (
        "Refund: {{ amount }} {{ currency }}",
        "Hello,\n\n{{ amount }} {{ currency }} of your payment {{ paymentId }} has been refunded"
        "{% if reason %} ({{ reason }}){% endif %}.\n",
        HTML.format(
            content="<p>Hello,</p><p><strong>{{ amount }} {{ currency }}</strong> of your payment has been "
            "refunded{% if reason %} ({{ reason }}){% endif %}.</p>",
            ref="Payment reference",
        ),
        "{{ amount }} {{ currency }} refunded for payment {{ paymentId }}.",
        "Refund issued",
        "{{ amount }} {{ currency }} refunded.",
    ),
    ("payment_refunded", "fr"): (
        "Remboursement : {{ amount }} {{ currency }}",
        "Bonjour,\n\n{{ amount }} {{ currency }} de votre paiement {{ paymentId }} ont été remboursés"
        "{% if reason %} ({{ reason }}){% endif %}.\n",
        HTML.format(
            content="<p>Bonjour,</p><p><strong>{{ amount }} {{ currency }}</strong> de votre paiement ont été "
            "remboursés{% if reason %} ({{ reason }}){% endif %}.</p>",
            ref="Référence du paiement",
        ),
        "{{ amount }} {{ currency }} remboursés pour le paiement {{ paymentId }}.",
        "Remboursement effectué",
        "{{ amount }} {{ currency }} remboursés.",
    ),
    ("payment_reversed", "en"): (
        "Payment reversed: {{ amount }} {{ currency }}",
        "Hello,\n\nYour payment {{ paymentId }} of {{ amount }} {{ currency }} has been reversed"
        "{% if reason %} ({{ reason }}){% endif %}.\n",
        HTML.format(
            content="<p>Hello,</p><p>Your payment of <strong>{{ amount }} {{ currency }}</strong> has been "
            "reversed{% if reason %} ({{ reason }}){% endif %}.</p>",
            ref="Payment reference",
        ),
        "Payment {{ paymentId }} of {{ amount }} {{ currency }} reversed.",
        "Payment reversed",
        "{{ amount }} {{ currency }} reversed{% if reason %} ({{ reason }}){% endif %}.",
    ),
    ("payment_reversed", "fr"): (
        "Paiement annulé : {{ amount }} {{ currency }}",
        "Bonjour,\n\nVotre paiement {{ paymentId }} de {{ amount }} {{ currency }} a été annulé"
        "{% if reason %} ({{ reason }}){% endif %}.\n",
        HTML.format(
            content="<p>Bonjour,</p><p>Votre paiement de <strong>{{ amount }} {{ currency }}</strong> a été "
            "annulé{% if reason %} ({{ reason }}){% endif %}.</p>",
            ref="Référence du paiement",
        ),
        "Paiement {{ paymentId }} de {{ amount }} {{ currency }} annulé.",
        "Paiement annulé",
        "{{ amount }} {{ currency }} annulés{% if reason %} ({{ reason }}){% endif %}.",
    ),
}


seed, unseed = template_seeder(TEMPLATES, SAMPLE)


class Migration(migrations.Migration):
    dependencies = [("notifications", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
