{#
    Divide as floating point, giving null when the denominator is 0 or null (instead of an error
    or infinity, which engines handle differently).
#}
{% macro safe_divide(numerator, denominator) %}
    case
        when {{ denominator }} = 0 then null
        else cast({{ numerator }} as {{ type_double() }}) / {{ denominator }}
    end
{% endmacro %}
